#!/usr/bin/perl
# Redis mode, the PUBLISH ingress: with two nodes up, exactly one holds the
# lease (<prefix>ingress) and is subscribed, so PUBLISH answers 1; each
# message is one log entry and is delivered once on both nodes, with the
# entry's id.  sse_redis_payload data (the payload is the data) and
# event-stream (the payload is a text/event-stream body); bad payloads are
# logged and dropped.  The lease holder killed with SIGKILL (master and
# workers): within ~6 s the other node holds the lease, and PUBLISHes are
# logged once and delivered again.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $http = "sse_history 1000;\nsse_heartbeat 1s;\nsse_max_message_size 1k;\n";

sub holder_of {
    my (@nodes) = @_;
    my @h;
    wait_until(sub { @h = ingress_nodes(@nodes); @h == 1 }, 8, 0.1);
    return @h == 1 ? $h[0] : undef;
}

# ---------------------------------------------------------------- payload data
my $A = start_node(redis => $r, name => 'A', http => $http);
my $B = start_node(redis => $r, name => 'B', http => $http);
my $H = holder_of($A, $B);
ok($H, 'exactly one of the two nodes says "redis_ingress":true')
    or diag('A: ' . json_encode(status($A)) . "\nB: " . json_encode(status($B)));
$H //= $A;
my $O = $H == $A ? $B : $A;
my $hn = $H == $A ? 'A' : 'B';
my $on = $H == $A ? 'B' : 'A';
is((status($O)->{redis_ingress} // '(none)') . '', 'false', "$on (not the holder) says \"redis_ingress\":false");
my $pttl = $r->cmd('PTTL', 'sse:ingress');
ok(!ref $pttl && $pttl > 0 && $pttl <= 3000, "the lease sse:ingress exists with an expiry of at most 3 s (PTTL $pttl)");

my %subs = map { my $n = $_; $n => [ map { $n->sse_connect($_) } '/events/news', '/events/news', '/events/news,other' ] } $A, $B;
is(scalar(grep { $_->status == 200 } map { @$_ } values %subs), 6, 'three streams on each node');

my @replies = map { $r->cmd('PUBLISH', 'sse:news', "pub $_") } 1 .. 20;
is(join(',', @replies), join(',', (1) x 20), 'PUBLISH sse:news answers 1 each time: one node subscribed, not two');
ok(wait_until(sub { scalar($r->log_of('sse:log', 'news')) >= 20 }, 5), '20 entries appear in sse:log');
my @log = $r->log_of('sse:log', 'news');
is(join(',', map { $_->{fields}{data} } @log), join(',', map { "pub $_" } 1 .. 20),
   'each message is logged once, in PUBLISH order');
ok(!grep({ exists $_->{fields}{event} } @log), 'payload data: the entries are of type message (no event field)');
my @want = entries_as_events(@log);
for my $n ([$hn, $H], [$on, $O]) {
    my $i = 0;
    for my $s (@{ $subs{ $n->[1] } }) {
        $i++;
        same_events([$s->read_events(count => 20, timeout => 10)], \@want,
                    "$n->[0] stream $i ($s->{path}): the 20 messages once, with the log's ids");
    }
}

# payload data: the payload is the data, whatever it looks like
{
    my $p = "event: tick\ndata: not parsed\r\nline 3";
    is($r->cmd('PUBLISH', 'sse:news', $p), 1, 'PUBLISH of a payload that looks like an event stream');
    ok(wait_until(sub { scalar($r->log_of('sse:log', 'news')) >= 21 }, 5), 'it is logged');
    my ($e) = ($r->log_of('sse:log', 'news'))[-1];
    is($e->{fields}{data} // '', $p, 'payload data: the entry data is the payload, byte for byte');
    my @ev = $subs{$O}[0]->read_events(count => 1, timeout => 5);
    same_events(\@ev, [{ id => $e->{id}, event => 'message', data => "event: tick\ndata: not parsed\nline 3" }],
                "$on: delivered as one message whose data lines are the payload's lines");
    $_->read_events(count => 1, timeout => 5) for grep { $_ != $subs{$O}[0] } map { @$_ } values %subs;
}

# bad payloads: logged and dropped, later messages still go through
{
    my $mark = $H->log_mark;
    my $len = $r->xlen('sse:log');
    my @bad = (['invalid UTF-8', 'sse:news', "bad \xff\xfe"], ['empty', 'sse:news', ''],
               ['NUL byte', 'sse:news', "a\0b"], ['over sse_max_message_size', 'sse:news', 'z' x 2000],
               ['bad channel name', 'sse:bad name', 'x']);
    for my $b (@bad) {
        is($r->cmd('PUBLISH', $b->[1], $b->[2]), 1, "PUBLISH with a bad payload ($b->[0]) reaches the holder");
    }
    is($r->cmd('PUBLISH', 'sse:news', 'good after the bad'), 1, 'then a good PUBLISH');
    ok(wait_until(sub { $r->xlen('sse:log') > $len }, 5), 'the good one is logged');
    my @new = grep { id_cmp($_->{id}, ($log[-1] // {})->{id} // '0-0') > 0 } $r->xrange_all('sse:log');
    is(join(',', map { $_->{fields}{data} // '?' } grep { ($_->{fields}{channel} // '') ne $SSERedis::WARMUP } @new),
       "event: tick\ndata: not parsed\r\nline 3,good after the bad", 'none of the bad payloads was logged');
    for my $s (map { @$_ } values %subs) {
        my @ev = $s->read_events(count => 1, timeout => 5);
        is($ev[0]{data} // '(nothing)', 'good after the bad',
           "$s->{path} on " . ($s->{srv} == $H ? $hn : $on) . ': the next event is the good one') or last;
    }
    # said at once, then at most once a second, with the count since
    my @lines = log_lines($H->error_log_since($mark), qw(warn error));
    like($lines[0] // '', qr/PUBLISH on "sse:news" dropped: event data is not valid UTF-8 \(1 dropped since the last such line\)/,
         'the holder logged the first dropped message at once, with why');
    ok(@lines >= 1 && @lines <= 2, 'and not a line for each of the ' . @bad . ' dropped in a row (' . @lines . ' lines)')
        or diag($H->error_log_since($mark));
    sleep 1.1;
    $mark = $H->log_mark;
    is($r->cmd('PUBLISH', 'sse:news', "bad \xff"), 1, 'a second later, one more bad PUBLISH');
    ok(wait_until(sub { $H->error_log_since($mark) =~ /dropped/ }, 5), 'it is logged');
    my ($n) = $H->error_log_since($mark) =~ /\((\d+) dropped since the last such line\)/;
    is($n // 0, @bad + 1 - @lines, 'the line counts those not logged before it, and itself');
}

# ---------------------------------------------------------------- the holder dies
{
    my $pids = join ' ', $H->pid, $H->child_pids;
    ok(kill_node($H), "SIGKILL to $hn, the lease holder (master and workers: $pids)");
    my $t0 = time();
    my (@probes, $took);
    for my $k (1 .. 60) {
        my $n = $r->cmd('PUBLISH', 'sse:news', "probe $k");
        push @probes, [$k, $n];
        if ($n == 1) { $took = time() - $t0; last }
        sleep 0.2;
    }
    ok(defined $took && $took <= 6.5, sprintf("PUBLISH answers 1 again %.1fs after the kill (at most ~6 s)", $took // -1))
        or diag('probe replies: ' . join(' ', map { "$_->[0]:$_->[1]" } @probes));
    ok(wait_until(sub { ingress_nodes($O) == 1 }, 3), "$on now says \"redis_ingress\":true");
    my @after = map { $r->cmd('PUBLISH', 'sse:news', "after failover $_") } 1 .. 5;
    is(join(',', @after), '1,1,1,1,1', 'five more PUBLISHes answer 1');
    my @ok = ((map { "probe $_->[0]" } grep { $_->[1] == 1 } @probes), map { "after failover $_" } 1 .. 5);
    ok(wait_until(sub {
        my %have = map { ($_->{fields}{data} // '') => 1 } $r->log_of('sse:log', 'news');
        !grep { !$have{$_} } @ok }, 5), 'the PUBLISHes a node received are logged');
    my @e = grep { ($_->{fields}{data} // '') =~ /^(?:probe|after failover)/ } $r->log_of('sse:log', 'news');
    is(join(',', map { $_->{fields}{data} } @e), join(',', @ok),
       'each once, in order (the probes nobody received are lost, as pub/sub is)');
    for my $s (@{ $subs{$O} }) {
        same_events([$s->read_events(count => scalar @e, timeout => 10)], [entries_as_events(@e)],
                    "$on $s->{path}: gets them once, with the log's ids");
    }
    is(scalar(grep { $_->read_events(timeout => 0.5) } @{ $subs{$O} }), 0, "$on: nothing more (no duplicate)");
    $_->close for map { @$_ } values %subs;
    $H->stop;
    $O->stop;
}
my $sse_news = scalar(my @n = $r->log_of('sse:log', 'news'));

# ---------------------------------------------------------------- payload event-stream
{
    my $eh = $http . "sse_redis_prefix es:;\nsse_redis_payload event-stream;\n";
    my $C = start_node(redis => $r, name => 'C (prefix es:, payload event-stream)', http => $eh);
    my $D = start_node(redis => $r, name => 'D (prefix es:, payload event-stream)', http => $eh);
    ok(holder_of($C, $D), 'C/D: exactly one holds the es: lease');
    my @s = map { $_->sse_connect('/events/news') } $C, $D;
    my $p = "event: tick\ndata: one\ndata: two\nid: 99\nretry: 5\n\ndata: three\n\n";
    is($r->cmd('PUBLISH', 'es:news', $p), 1, 'PUBLISH es:news with a two-event body answers 1');
    ok(wait_until(sub { scalar($r->log_of('es:log', 'news')) >= 2 }, 5), 'es:log gets entries');
    my @log = $r->log_of('es:log', 'news');
    is(join(',', map { ($_->{fields}{event} // 'message') . '=' . ($_->{fields}{data} // '') =~ s/\n/\\n/gr } @log),
       'tick=one\ntwo,message=three', 'payload event-stream: two entries, with their types and data (id/retry ignored)');
    for my $i (0, 1) {
        same_events([$s[$i]->read_events(count => 2, timeout => 10)], [entries_as_events(@log)],
                    ($i ? 'D' : 'C') . ': both events, with the log\'s ids');
    }
    is($r->cmd('PUBLISH', 'es:news', "event: only\n\n"), 1, 'a body without data');
    is($r->cmd('PUBLISH', 'es:news', "data: last\n\n"), 1, 'then a good one');
    ok(wait_until(sub { scalar($r->log_of('es:log', 'news')) >= 3 }, 5), 'the good one is logged');
    is(join(',', map { $_->{fields}{data} } ($r->log_of('es:log', 'news'))[2 .. 2]), 'last',
       'the body without data was dropped');
    is(join(',', map { $_->{data} } map { $_->read_events(count => 1, timeout => 5) } @s), 'last,last',
       'both nodes deliver the good one next');
    is(scalar(my @n2 = $r->log_of('sse:log', 'news')), $sse_news, 'nothing of the es: nodes went to sse:log');
    $_->close for @s;
    $C->stop;
    $D->stop;
}

$r->stop;
done_testing;
