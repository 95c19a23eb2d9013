#!/usr/bin/perl
# Redis mode, Redis unavailable.  Nodes A and B talk to a redis-server
# (with persistence, as a production one would have); node C reaches the
# same server through a proxy the test can cut (SSERedis::Fake proxy: it
# closes C's connections and stops listening), the clean way to cut one
# node off while the others keep publishing.
#   - CLIENT PAUSE 3000 WRITE with sse_redis_timeout 500ms: POST answers
#     503 within ~1 s and the event never appears, not in the log, not on
#     any subscriber, even after the pause; publishing works again after;
#   - C cut off: C says "down", its POSTs get 503, its streams stay open
#     with heartbeats; what A POSTs and a backend XADDs meanwhile reaches
#     C's open streams once its link is back, in order, with the same ids;
#   - Redis stopped ~8 s: streams stay open with heartbeats, status "down"
#     then "up", at most 3 error lines per node, POST 503 then 201 again
#     without reload, subscribers get it;
#   - Redis restarted empty (data lost): publishing works and is delivered.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start(persist => 1);
my $http = "sse_history 1000;\nsse_heartbeat 1s;\nsse_redis_timeout 500ms;\n";
my $A = start_node(redis => $r, name => 'A', http => $http);
my $B = start_node(redis => $r, name => 'B', http => $http);
my $P = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
my $C = start_node(url => $P->url, name => 'C (through a proxy)', http => $http);
my %name = ($A => 'A', $B => 'B', $C => 'C');
my @nodes = ($A, $B, $C);

my %sub = map { $_ => $_->sse_connect('/events/news') } @nodes;
is(join(',', map { $sub{$_}->status } @nodes), '200,200,200', 'a stream on each node');

# every stream gets these events once, in order
sub all_get {
    my ($want, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    for my $n (@nodes) {
        same_events([$sub{$n}->read_events(count => scalar @$want, timeout => 10)], $want,
                    "$name{$n}: $what");
    }
}
sub post_ok {
    my ($srv, $data) = @_;
    my $res = $srv->publish('/pub/news', $data);
    return { id => $res->{json}{id}, event => 'message', data => $data, status => $res->{status} };
}

{
    my $e = post_ok($A, 'before');
    is($e->{status}, 201, 'POST on A: 201');
    all_get([$e], 'the first event');
}

# ---------------------------------------------------------------- CLIENT PAUSE
{
    my $len = $r->xlen('sse:log');
    is($r->cmd('CLIENT', 'PAUSE', 3000, 'WRITE'), 'OK', 'CLIENT PAUSE 3000 WRITE');
    my $t0 = time();
    my $res = $A->publish('/pub/news', 'during the pause');
    my $dt = time() - $t0;
    check_json_error($res, 503, 'POST while Redis is paused');
    is($res->{json}{error} // '', 'redis unavailable', 'the error is "redis unavailable"');
    ok($dt < 2, sprintf('answered in %.2fs (sse_redis_timeout 500ms: ~1 s at most)', $dt));
    my $res2 = $B->publish('/pub/news', 'during the pause on B');
    is($res2->{status}, 503, 'POST on B while paused: 503 as well');
    # many at once: each gets its 503, the log does not get a line each
    my $mark = $A->log_mark;
    my @many = $A->http_parallel(40, 'POST', '/pub/news', body => 'during the pause, one of many');
    is(join(',', sort { $a <=> $b } keys %{{ map { $_->{status} => 1 } @many }}), '503',
       '40 POSTs at once while paused: 503 each');
    my @lines = grep { /did not answer a publish/ } split /\n/, $A->error_log_since($mark);
    ok(@lines >= 1 && @lines <= 4, 'A logs them in at most a line a second per worker (' . scalar(@lines) . ')')
        or diag(join "\n", @lines);
    # the pause ends 3 s after it began; then give Redis and the nodes time
    sleep($t0 + 5 - time()) if $t0 + 5 > time();
    my @in_log = grep { ($_->{fields}{data} // '') =~ /during the pause/ } $r->xrange_all('sse:log');
    is(scalar @in_log, 0, 'after the pause, the refused events are not in the log')
        or diag(join ', ', map { "$_->{id} $_->{fields}{data}" } @in_log);
    is($r->xlen('sse:log') - $len, 0, 'nothing at all was appended by the refused POSTs');
    my @got = map { my $n = $_; map { "$name{$n}: $_->{data}" } $sub{$n}->read_events(timeout => 0) } @nodes;
    is(join('; ', @got), '', 'no subscriber got anything of them');
    ok(node_ready($_, 10), "$name{$_}: publishing works again after the pause") for $A, $B;
    my $e = post_ok($B, 'after the pause');
    is($e->{status}, 201, 'POST on B after the pause: 201');
    all_get([$e], 'the event after the pause, and nothing of the paused ones');
}

# A pause longer than sse_redis_timeout (500ms) but shorter than the time the
# module keeps a silent link (timeout + 1 s): the script call is still
# queued in Redis when the pause ends and runs then, after its deadline on
# Redis's clock, so it must append nothing (the 3 s pause above may be
# settled by the link being dropped instead).
{
    my $len = $r->xlen('sse:log');
    is($r->cmd('CLIENT', 'PAUSE', 1000, 'WRITE'), 'OK', 'CLIENT PAUSE 1000 WRITE');
    my $t0 = time();
    my $res = $A->publish('/pub/news', 'during the short pause');
    my $dt = time() - $t0;
    check_json_error($res, 503, 'POST during a 1 s pause');
    ok($dt < 1, sprintf('answered in %.2fs, before the pause ended', $dt));
    sleep($t0 + 3 - time()) if $t0 + 3 > time();
    my @in_log = grep { ($_->{fields}{data} // '') eq 'during the short pause' } $r->xrange_all('sse:log');
    is(scalar @in_log, 0, 'the script ran after the pause, past its deadline: it appended nothing');
    is($r->xlen('sse:log') - $len, 0, 'the log did not grow');
    my @got = map { my $n = $_; map { "$name{$n}: $_->{data}" } $sub{$n}->read_events(timeout => 0) } @nodes;
    is(join('; ', @got), '', 'no subscriber got it');
    ok(node_ready($_, 10), "$name{$_}: publishing works after the short pause") for $A, $B;
}

# ---------------------------------------------------------------- one node cut off
{
    my $hb0 = scalar(my @c = $sub{$C}->comments);
    ok($P->cut, 'the proxy in front of C is cut');
    ok(wait_redis($C, 'down', 10), 'C: status "down"') or diag('C: ' . redis_state($C));
    is(redis_state($A), 'up', 'A: still "up"');
    my $res = $C->publish('/pub/news', 'on C while cut');
    check_json_error($res, 503, 'POST on C while cut off');
    is($res->{json}{error} // '', 'redis unavailable', 'the error is "redis unavailable"');
    my @missed;
    for my $i (1 .. 3) {
        my $e = post_ok($A, "missed by C $i");
        is($e->{status}, 201, "POST $i on A while C is cut: 201");
        push @missed, $e;
    }
    for my $i (4, 5) {
        my $id = $r->xadd('sse:log', channel => 'news', data => "missed by C $i");
        push @missed, { id => $id, event => 'message', data => "missed by C $i" };
    }
    for my $n ($A, $B) {
        same_events([$sub{$n}->read_events(count => 5, timeout => 10)], \@missed,
                    "$name{$n}: the 3 POSTs and 2 XADDs made while C is cut off");
    }
    my @early = $sub{$C}->read_events(timeout => 2);
    is(scalar @early, 0, 'C: its stream gets none of them while cut off');
    ok(!$sub{$C}->is_closed(0), 'C: its stream stays open');
    ok(scalar(my @c2 = $sub{$C}->comments) > $hb0, 'C: and gets heartbeats');
    ok($P->restore, 'the proxy is back');
    ok(wait_redis($C, 'up', 10), 'C: status "up" again') or diag('C: ' . redis_state($C));
    same_events([$sub{$C}->read_events(count => 5, timeout => 10)], \@missed,
                'C: its open stream gets what it missed, in order, with the same ids');
    ok(node_ready($C, 10), 'C: every worker publishes again');
    my $e = post_ok($C, 'from C after the cut');
    is($e->{status}, 201, 'POST on C after the cut: 201');
    all_get([$e], 'the event POSTed on C after the cut');
}

# ---------------------------------------------------------------- Redis stopped, restarted
{
    my %mark = map { $_ => $_->log_mark } @nodes;
    my %rc0 = map { $_ => $_->stat('redis_reconnects') } @nodes;
    my %hb0 = map { $_ => scalar(my @c = $sub{$_}->comments) } @nodes;
    ok($r->stop, 'redis-server stopped (SHUTDOWN NOSAVE)');
    my $t_down = time();
    for my $n (@nodes) {
        ok(wait_redis($n, 'down', 5), "$name{$n}: status \"down\"") or diag("$name{$n}: " . redis_state($n));
    }
    my %got;
    while (time() < $t_down + 8) {
        push @{ $got{$_} }, $sub{$_}->read_events(timeout => 0.2) for @nodes;
    }
    for my $n (@nodes) {
        is(scalar @{ $got{$n} || [] }, 0, "$name{$n}: no event while Redis is down");
        ok(!$sub{$n}->is_closed(0), "$name{$n}: the stream stayed open for 8 s without Redis");
        my $hb = scalar(my @c = $sub{$n}->comments) - $hb0{$n};
        ok($hb >= 5, "$name{$n}: heartbeats went on (sse_heartbeat 1s: $hb in 8 s)");
        my @err = log_lines($n->error_log_since($mark{$n}), qw(error crit alert emerg));
        ok(@err <= 3, "$name{$n}: no log flood: " . @err . ' error lines in ~8 s down (at most 3)')
            or diag(join "\n", @err[0 .. ($#err > 15 ? 15 : $#err)]);
    }
    my $t0 = time();
    my $res = $A->publish('/pub/news', 'while redis is down');
    check_json_error($res, 503, 'POST on A while Redis is down');
    is($res->{json}{error} // '', 'redis unavailable', 'the error is "redis unavailable"');
    ok(time() - $t0 < 2, sprintf('answered in %.2fs', time() - $t0));
    is($B->publish('/pub/news', 'while redis is down')->{status}, 503, 'POST on B: 503 too');

    $r->start;
    for my $n (@nodes) {
        ok(wait_redis($n, 'up', 10), "$name{$n}: status \"up\" again after Redis restarted, without reload")
            or diag("$name{$n}: " . redis_state($n));
        like($n->error_log_since($mark{$n}), qr/redis link up/, "$name{$n}: error.log says \"redis link up\"");
        ok($n->stat('redis_reconnects') > $rc0{$n}, "$name{$n}: redis_reconnects went up");
    }
    is(scalar(grep { ($_->{fields}{data} // '') eq 'while redis is down' } $r->xrange_all('sse:log')), 0,
       'the refused POSTs are not in the log');
    ok(node_ready($_, 10), "$name{$_}: every worker publishes again") for @nodes;
    my @after = (post_ok($A, 'after restart on A'), post_ok($B, 'after restart on B'), post_ok($C, 'after restart on C'));
    is(join(',', map { $_->{status} } @after), '201,201,201', 'POST on A, B and C after the restart: 201');
    all_get(\@after, 'the same open stream gets the events POSTed after the restart, on every node');
}

# ---------------------------------------------------------------- Redis back empty
{
    $r->stop;
    $r->wipe;
    $r->start;
    is($r->cmd('EXISTS', 'sse:log'), 0, 'redis-server restarted without its data');
    ok(node_ready($_, 15), "$name{$_}: publishing works again on an empty Redis") for @nodes;
    my @e = (post_ok($B, 'on an empty redis'));
    my $id = $r->xadd('sse:log', channel => 'news', data => 'xadd on an empty redis');
    push @e, { id => $id, event => 'message', data => 'xadd on an empty redis' };
    is($e[0]{status}, 201, 'POST on B: 201');
    all_get(\@e, 'the POST and an XADD on the emptied Redis are delivered');
}

$_->close for values %sub;
$_->stop for @nodes;
$P->stop;
$r->stop;
done_testing;
