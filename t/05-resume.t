#!/usr/bin/perl
# Resume: Last-Event-ID header and ?last_event_id=, unknown-but-well-formed
# ids, malformed ids (live only), too-old ids (everything kept), and resume
# while a publisher is publishing (no gap, no duplicate).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IO::Select;
use IO::Handle;
use POSIX ();
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 2,
    http => "sse_history 1000;\n",
    server_extra => <<'EOS',
        location ~ ^/pub3/(.+)$ { sse_publish $1; sse_history 3; }
EOS
);

sub ids_of { map { $_->{id} // 'undef' } @_ }

# read what a resumed stream sends within $t seconds (exact list check)
sub replay {
    my ($path, %o) = @_;
    my $s = $srv->sse_connect($path, %o);
    return ($s) unless $s->status == 200;
    my @ev = defined $o{count}
        ? $s->read_events(count => $o{count}, timeout => 3)
        : ();
    push @ev, $s->read_events(timeout => $o{settle} // 0.4);
    return ($s, @ev);
}

# --- e1..e5 on r1, with a gap in milliseconds between e3 and e4
my (@e, @d);
for my $i (1 .. 5) {
    sleep 0.03 if $i == 4;
    my $r = $srv->publish('/pub/r1', "r1 event $i");
    is($r->{status}, 201, "publish e$i");
    push @e, $r->{json}{id};
    push @d, "r1 event $i";
}
ok(ids_strictly_increasing(@e), 'ids increasing');

{
    my ($s, @ev) = replay('/events/r1', headers => { 'Last-Event-ID' => $e[1] }, count => 3);
    is($s->status, 200, 'Last-Event-ID: 200');
    is_deeply([ids_of(@ev)], [@e[2 .. 4]], 'Last-Event-ID e2: replays e3, e4, e5 and nothing else');
    is_deeply([map { $_->{data} } @ev], [@d[2 .. 4]], 'replayed data');
    my $r = $srv->publish('/pub/r1', 'r1 event 6');
    push @e, $r->{json}{id};
    push @d, 'r1 event 6';
    my @live = $s->read_events(count => 1, timeout => 3);
    push @live, $s->read_events(timeout => 0.3);
    is_deeply([ids_of(@live)], [$e[5]], 'then the live event, once');
    $s->close;
}

{
    my ($s, @ev) = replay("/events/r1?last_event_id=$e[2]", count => 3);
    is($s->status, 200, '?last_event_id: 200');
    is_deeply([ids_of(@ev)], [@e[3 .. 5]], '?last_event_id=e3: replays e4, e5, e6');
    $s->close;
}

{
    my ($s, @ev) = replay("/events/r1?last_event_id=$e[0]",
                          headers => { 'Last-Event-ID' => $e[3] }, count => 2);
    is_deeply([ids_of(@ev)], [@e[4 .. 5]], 'the Last-Event-ID header wins over ?last_event_id=');
    $s->close;
}

{
    my ($ms3, $seq3) = parse_id($e[2]);
    my ($ms4) = parse_id($e[3]);
    ok($ms4 >= $ms3 + 2, 'e3 and e4 are at least 2 ms apart');
    my $unknown = ($ms3 + 1) . '-0';
    ok(id_cmp($unknown, $e[2]) > 0 && id_cmp($unknown, $e[3]) < 0,
       "unknown id $unknown lies between e3 and e4");
    my ($s, @ev) = replay('/events/r1', headers => { 'Last-Event-ID' => $unknown }, count => 3);
    is_deeply([ids_of(@ev)], [@e[3 .. 5]], 'unknown but well-formed id: every kept event after it');
    $s->close;

    ($s, @ev) = replay('/events/r1', headers => { 'Last-Event-ID' => $e[5] });
    is(scalar @ev, 0, 'resume from the newest id: nothing replayed');
    my $r = $srv->publish('/pub/r1', 'r1 event 7');
    push @e, $r->{json}{id};
    my @live = $s->read_events(count => 1, timeout => 3);
    is_deeply([ids_of(@live)], [$e[6]], '...then live events');
    $s->close;
}

# --- resume from inside a millisecond: the events of a batch share their
# millisecond and differ in their sequence only
{
    my $body = join '', map { "data: rb batch $_\n\n" } 1 .. 6;
    my $r = $srv->publish('/pub/rb', $body, content_type => 'text/event-stream');
    is($r->{status}, 201, 'a batch of 6 events');
    is($r->{json}{events}, 6, '...6 events published');
    my ($s0, @all) = replay('/events/rb', headers => { 'Last-Event-ID' => '0-0' }, count => 6);
    my @b = ids_of(@all);
    is(scalar @b, 6, 'replay from 0-0: the 6 events');
    is($b[-1], $r->{json}{id}, 'the last is the id the publish answered');
    ok(ids_strictly_increasing(@b), 'their ids increase');
    my %ms = map { (parse_id($_))[0] => 1 } @b;
    is(scalar keys %ms, 1, "the 6 ids share one millisecond (@b)");
    $s0->close;

    my ($s, @ev) = replay('/events/rb', headers => { 'Last-Event-ID' => $b[1] }, count => 4);
    is_deeply([ids_of(@ev)], [@b[2 .. 5]], 'resume from the 2nd of the millisecond: the 4 after it');
    is_deeply([map { $_->{data} } @ev], [map { "rb batch $_" } 3 .. 6], '...with their data');
    $s->close;

    ($s, @ev) = replay("/events/rb?last_event_id=$b[3]", count => 2);
    is_deeply([ids_of(@ev)], [@b[4, 5]], '?last_event_id= from the 4th: the 2 after it');
    $s->close;

    ($s, @ev) = replay('/events/rb', headers => { 'Last-Event-ID' => $b[4] }, count => 1);
    is_deeply([ids_of(@ev)], [$b[5]], 'resume from the newest but one: the newest only');
    my $live = $srv->publish('/pub/rb', 'rb live')->{json}{id};
    my @l = $s->read_events(count => 1, timeout => 3);
    push @l, $s->read_events(timeout => 0.3);
    is_deeply([ids_of(@l)], [$live], '...then the live event, once');
    $s->close;

    # newest but one across milliseconds too: $b[5] and the live event
    ($s, @ev) = replay('/events/rb', headers => { 'Last-Event-ID' => $b[5] }, count => 1);
    is_deeply([ids_of(@ev)], [$live], 'resume from the newest but one (the batch\'s last): the newest');
    $s->close;

    ($s, @ev) = replay('/events/rb', headers => { 'Last-Event-ID' => $live });
    is(scalar @ev, 0, 'resume from the newest: nothing');
    $s->close;
}

# --- no id at all: live only
{
    my ($s, @ev) = replay('/events/r1');
    is(scalar @ev, 0, 'no Last-Event-ID: nothing replayed');
    $s->close;
}

# --- malformed ids: treated as no id (live only)
{
    my @bad = ('garbage', '12345', '1-2-3', '-1-2', '1-', '-', 'abc-def', '1.5-2',
               '0x10-1', '1-2x', '+1-2', '1 -2');
    my @streams;
    for my $b (@bad) {
        for my $how ('header', 'query') {
            my ($s, @ev) = $how eq 'header'
                ? replay('/events/r1', headers => { 'Last-Event-ID' => $b }, settle => 0.2)
                : replay('/events/r1?last_event_id=' . url_encode($b), settle => 0.2);
            is($s->status, 200, "malformed id '$b' ($how): 200");
            is(scalar @ev, 0, "malformed id '$b' ($how): nothing replayed")
                or diag('got ' . join ' ', ids_of(@ev));
            push @streams, [$s, "'$b' ($how)"];
        }
    }
    my $r = $srv->publish('/pub/r1', 'live after malformed');
    push @e, $r->{json}{id};
    for my $p (@streams) {
        my ($s, $name) = @$p;
        my @ev = $s->read_events(count => 1, timeout => 3);
        push @ev, $s->read_events(timeout => 0.05);
        is_deeply([ids_of(@ev)], [$e[-1]], "malformed id $name: gets the live event only");
        $s->close;
    }
}

# --- too old: history 3 keeps f4..f6; older ids get everything kept
{
    my @f;
    for my $i (1 .. 6) {
        my $r = $srv->publish('/pub3/r3', "r3 event $i");
        is($r->{status}, 201, "publish f$i (history 3)");
        push @f, $r->{json}{id};
    }
    my $g = $srv->http('GET', '/pub3/r3');
    is($g->{json}{events}, 3, 'three events kept');
    for my $old ($f[0], $f[1], '0-0', '1-0', $e[0]) {
        my ($s, @ev) = replay('/events/r3', headers => { 'Last-Event-ID' => $old }, count => 3);
        is_deeply([ids_of(@ev)], [@f[3 .. 5]], "too-old id $old: gets the 3 kept events");
        $s->close;
    }
    my ($s, @ev) = replay('/events/r3', headers => { 'Last-Event-ID' => $f[3] }, count => 2);
    is_deeply([ids_of(@ev)], [@f[4 .. 5]], 'id of the oldest kept event: the two after it');
    $s->close;
}

# --- resume while a publisher is publishing
{
    for my $i (1 .. 5) { $srv->publish('/pub/rc', "pre $i") }
    my $pre = $srv->http('GET', '/pub/rc')->{json}{id};
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $N = 300;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        $wr->autoflush(1);
        for my $i (1 .. $N) {
            my $r = SSETest::publish($srv, '/pub/rc', "live $i");
            print $wr ($r->{status} == 201 ? $r->{json}{id} : "ERR$r->{status}") . "\n";
            sleep 0.002;
        }
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    my @pub;           # ids published by the child, in order
    my @resumers;      # [stream, resume_id, index into @pub of the resume id or -1]
    my %thresholds = map { $_ => 1 } (1, 20, 60, 100, 150, 200, 250, 290);
    my $sel = IO::Select->new($rd);
    my $buf = '';
    my $deadline = time() + 60;
    # one resumer from before the publisher started
    push @resumers, [$srv->sse_connect('/events/rc', headers => { 'Last-Event-ID' => $pre }), $pre, 'pre'];
    my $eof = 0;
    while (!$eof && time() < $deadline) {
        next unless $sel->can_read(1);
        my $n = sysread($rd, $buf, 4096, length $buf);
        $eof = 1 if !$n;
        while ($buf =~ s/\A([^\n]*)\n//) {
            push @pub, $1;
            if ($thresholds{ scalar @pub }) {
                my $k = scalar @pub;
                # resume from the newest id, and from a few events back
                push @resumers, [$srv->sse_connect('/events/rc',
                    headers => { 'Last-Event-ID' => $pub[-1] }), $pub[-1], "at $k"];
                my $back = $k > 5 ? $pub[-6] : $pre;
                push @resumers, [$srv->sse_connect("/events/rc?last_event_id=$back"),
                    $back, "at $k, 5 back, query"];
            }
        }
    }
    waitpid $pid, 0;
    is(scalar @pub, $N, "publisher published $N events");
    is(scalar(grep { /^ERR/ } @pub), 0, 'all concurrent publishes succeeded');
    ok(ids_strictly_increasing($pre, @pub), 'published ids increasing');
    for my $res (@resumers) {
        my ($s, $from, $name) = @$res;
        my @expect = grep { id_cmp($_, $from) > 0 } @pub;
        my @ev = $s->read_events(count => scalar @expect, timeout => 10);
        push @ev, $s->read_events(timeout => 0.1);
        my @got = ids_of(@ev);
        my $ok = is_deeply(\@got, \@expect,
            "resume $name (from $from): replay + live is exactly the "
            . scalar(@expect) . " ids after the resume point, in order");
        unless ($ok) {
            my %g = map { $_ => 1 } @got;
            my %x = map { $_ => 1 } @expect;
            my %c; my @dup = grep { $c{$_}++ } @got;
            diag('missing: ' . join(' ', grep { !$g{$_} } @expect));
            diag('unexpected: ' . join(' ', grep { !$x{$_} } @got));
            diag('duplicated: ' . join(' ', @dup));
        }
        $s->close;
    }
}

$srv->stop;
done_testing;
