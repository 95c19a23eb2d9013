#!/usr/bin/perl
# A resume's replay is bounded like any other output: it is sent as the
# client drains it, so a client that reads nothing holds little of the
# worker's memory and is closed by send_timeout; a client that reads
# slowly but steadily gets every kept event once, in order, then the live
# ones; and a replaying client that falls so far behind that what it has
# not been sent yet leaves the history gets a clean end of its stream (it
# resumes with its Last-Event-ID), never a silent gap.
#
# The servers listen with sndbuf=4096: the kernel then takes little of a
# stream's output at a time, and what it does not take is the worker's to
# hold (with loopback's large default send buffers the kernel would take
# a 1 MB replay whole, and the test would not see where it is held).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

sub ids_of { map { $_->{id} // 'undef' } @_ }

sub post_es {
    my ($srv, $path, $body) = @_;
    return $srv->http('POST', $path, headers => { 'Content-Type' => 'text/event-stream' },
                      body => $body, timeout => 20);
}

# publishes $k events of about 1 kB to $ch in one batch; returns their data
# (their ids are read back from a stream)
my $seq = 0;
sub batch {
    my ($srv, $ch, $k) = @_;
    my @d = map { $seq++; "$ch #$seq " . ('r' x 1000) } 1 .. $k;
    my $r = post_es($srv, "/pub/$ch", join('', map { "data: $_\n\n" } @d));
    die "batch to $ch: $r->{status} $r->{body}\n" unless $r->{status} == 201;
    return @d;
}

# the kept events of $chans after $after, as a fresh stream replays them
sub kept {
    my ($srv, $chans, $after, $n) = @_;
    my $s = $srv->sse_connect("/events/$chans", headers => { 'Last-Event-ID' => $after });
    my @ev = $s->read_events(count => $n, timeout => 10);
    push @ev, $s->read_events(timeout => 0.3);
    $s->close;
    return @ev;
}

sub nonneg { $_[0] > 0 ? $_[0] : 0 }

sub rss_sum {
    my ($srv) = @_;
    my $t = 0;
    $t += $srv->rss_kb($_) // 0 for $srv->worker_pids;
    return $t;
}

# ---------------------------------------------------------------------
# (a) 40 clients resume a channel with 1 MB of history and read nothing

{
    my $srv = start_nginx(workers => 2, listen_opts => 'sndbuf=4096',
        http => "sse_history 1100;\nsse_heartbeat off;\n",
        server_extra => <<'EOS');
        location ~ ^/short/(.+)$ { send_timeout 2s; sse_stream $1; }
EOS
    batch($srv, 'big', 250) for 1 .. 4;
    is($srv->http('GET', '/pub/big')->{json}{events}, 1000, '(a) big keeps 1000 events of 1 kB');

    # warm-up: one client takes the whole replay, so that what a worker
    # allocates once is allocated before the baseline
    for (1 .. 2) {
        my @ev = kept($srv, 'big', '0-0', 1000);
        is(scalar @ev, 1000, '(a) warm-up: a resume replays the 1000 events');
    }
    sleep 0.5;
    my $base = rss_sum($srv);
    ok($base > 0, "(a) the workers' RSS: $base kB");

    my $N = 40;
    my @s = map {
        $srv->sse_connect('/events/big', rcvbuf => 4096, read_max => 2048,
                          headers => { 'Last-Event-ID' => '0-0' })
    } 1 .. $N;
    is(scalar(grep { $_->status == 200 } @s), $N, "(a) $N resuming streams open");
    ok($srv->wait_stat(subscribers => $N, 10), "(a) $N subscribers");
    my $max = 0;
    for (1 .. 12) {
        sleep 0.25;
        my $g = rss_sum($srv) - $base;
        $max = $g if $g > $max;
    }
    ok($max < 8 * 1024,
       "(a) $N clients that resume 1 MB each and read nothing grow the workers' RSS by less than 8 MB ($max kB)");
    is($srv->stat('subscribers'), $N, '(a) they are still subscribed (send_timeout 60s)');
    $_->close for @s;
    ok($srv->wait_stat(subscribers => 0, 10), '(a) they leave');

    # with send_timeout 2s they are closed: a replay is output owed
    @s = map {
        $srv->sse_connect('/short/big', rcvbuf => 4096, read_max => 2048,
                          headers => { 'Last-Event-ID' => '0-0' })
    } 1 .. $N;
    is(scalar(grep { $_->status == 200 } @s), $N, "(a) $N resuming streams open, send_timeout 2s");
    my $t0 = time();
    ok($srv->wait_stat(subscribers => 0, 15),
       "(a) send_timeout 2s closes all $N clients that read none of their replay")
        or diag('subscribers left: ' . $srv->stat('subscribers'));
    diag(sprintf '(a) closed after %.1fs', time() - $t0);
    # the connections are closed, not only forgotten by the hub
    my $dl = time() + 5;
    my $closed = grep { $_->is_closed(nonneg($dl - time())) } @s;
    is($closed, $N, "(a) all $N connections were closed by the server");
    $_->close for @s;

    # the hub is well: a resume still gets everything
    is(scalar(kept($srv, 'big', '0-0', 1000)), 1000, '(a) a resume afterwards replays the 1000');
    $srv->stop;
}

# ---------------------------------------------------------------------
# (b) a client that reads slowly but steadily, while events are published:
#     every kept event once, in order, then every live event once

{
    my $srv = start_nginx(workers => 2, listen_opts => 'sndbuf=4096',
                          http => "sse_history 2000;\nsse_heartbeat off;\n");
    my @workers = sort $srv->worker_pids;
    is(scalar @workers, 2, '(b) 2 workers');
    my $run = 0;
    for my $multi (0, 1) {
        for my $want_w (@workers) {
            $run++;
            my ($A, $B) = ("slow${run}a", "slow${run}b");
            my $chans = $multi ? "$A,$B" : $A;
            # 300 events a channel, the two interleaved by batches
            my @pub;
            for (1 .. 10) {
                push @pub, batch($srv, $A, 30);
                my @b = batch($srv, $B, 30);
                push @pub, @b if $multi;
            }
            my @hist = kept($srv, $chans, '0-0', scalar @pub);
            is_deeply([map { $_->{data} } @hist], \@pub, "(b) run $run: $chans keeps its events");
            ok(ids_strictly_increasing(ids_of(@hist)), "(b) run $run: in id order");
            # resume after the 5th kept event
            my $after = $hist[4]{id};
            my @want = map { [$_->{id}, $_->{data}] } @hist[5 .. $#hist];

            # a stream in worker $want_w
            my $s;
            for (1 .. 100) {
                $s = $srv->sse_connect("/events/$chans", rcvbuf => 4096, read_max => 2048,
                                       headers => { 'Last-Event-ID' => $after });
                last if ($s->worker // '') eq $want_w;
                $s->close;
                undef $s;
            }
            ok($s, "(b) run $run: a stream of $chans in worker $want_w") or next;
            is($s->status, 200, "(b) run $run: 200");

            # read about 2 kB every 5 ms; publish an event every ~30 ms
            # until the replay is done and live events come
            my (@got, @live, $at_first_live);
            my $next_pub = time();
            my $deadline = time() + 30;
            my $i = 0;
            while (time() < $deadline && !$s->is_closed(0)) {
                $s->trickle(2048, 0.005);
                push @got, $s->take_parsed;
                last if @got >= @want + 10 && @live >= 20;
                if (time() >= $next_pub && @live < 300) {
                    my $ch = $multi && $i++ % 2 ? $B : $A;
                    my $d = "$ch live " . scalar(@live) . ' ' . ('l' x 1000);
                    $at_first_live //= scalar @got;
                    my $r = $srv->publish("/pub/$ch", $d);
                    is($r->{status}, 201, "(b) run $run: live publish") unless $r->{status} == 201;
                    push @live, [$r->{json}{id}, $d];
                    $next_pub = time() + 0.03;
                }
                sleep 0.005;
            }
            ok(@live >= 20, "(b) run $run: " . scalar(@live) . ' events published while it read');
            # the rest, at full speed
            my @all = (@want, @live);
            push @got, $s->read_events(count => @all - @got, timeout => 10) if @got < @all;
            push @got, $s->read_events(timeout => 0.5);
            ok(!$s->is_closed(0), "(b) run $run: the stream is still open");
            is(scalar @got, scalar @all, "(b) run $run: " . scalar(@all) . ' events, no more, no less');
            is_deeply([ids_of(@got)], [map { $_->[0] } @all],
                      "(b) run $run: the kept events after Last-Event-ID, then the live ones, each once, in order");
            is_deeply([map { $_->{data} } @got], [map { $_->[1] } @all],
                      "(b) run $run: with their data");
            diag("(b) run $run ($chans, worker $want_w): " . scalar(@want) . ' replayed, '
                 . scalar(@live) . " live; the first live one was published when $at_first_live had arrived");
            $s->close;
        }
    }
    ok($srv->wait_stat(subscribers => 0, 5), '(b) all gone');
    $srv->stop;
}

# ---------------------------------------------------------------------
# (c) a replaying client that reads nothing while the history moves on:
#     200 events of 1 kB kept (more than the worker reads of a replay at
#     a time, so that most of it is still in the zone), then 600 more
#     published: what it has not been sent yet leaves the history

{
    my $srv = start_nginx(workers => 2, listen_opts => 'sndbuf=4096',
                          http => "sse_history 200;\nsse_heartbeat off;\n");
    for my $round (1 .. 2) {
        my $ch = "roll$round";
        my @pub;
        push @pub, batch($srv, $ch, 50) for 1 .. 6;
        my @kept0 = kept($srv, $ch, '0-0', 200);
        is(scalar @kept0, 200, "(c) round $round: $ch keeps 200 events");
        is_deeply([map { $_->{data} } @kept0], [@pub[100 .. 299]], "(c) round $round: the newest 200");

        my $s = $srv->sse_connect("/events/$ch", rcvbuf => 4096, read_max => 2048,
                                  headers => { 'Last-Event-ID' => '0-0' });
        is($s->status, 200, "(c) round $round: a resume of $ch that reads nothing");
        sleep 0.3;
        # 600 more: the history moves on three times over
        push @pub, batch($srv, $ch, 20) for 1 .. 30;
        my @now = kept($srv, $ch, '0-0', 200);
        is_deeply([map { $_->{data} } @now], [@pub[700 .. 899]],
                  "(c) round $round: the history now holds the newest 200 of 900");

        # now it reads: a run of events with no hole, then a clean end
        my @got = $s->read_events(timeout => 15);
        ok($s->ended_cleanly, "(c) round $round: the stream ended cleanly (chunked terminator)")
            or diag('eof: ' . ($s->{eof} ? 1 : 0) . ', events: ' . scalar(@got)
                    . ', protocol error: ' . ($s->{protocol_error} // 'none'));
        ok(substr($s->body, -2) eq "\n\n", "(c) round $round: its last event is whole")
            or diag('the stream ends with ' . SSETest::_show(substr($s->body, -60)));
        ok(@got > 0, "(c) round $round: it got " . scalar(@got) . ' events first');
        is_deeply([map { $_->{data} } @got], [@pub[100 .. 99 + @got]],
                  "(c) round $round: from the first kept at its start, with no hole");
        my $last = $s->last_event_id;
        $s->close;

        # it resumes with its last id: the kept events after it
        my @want = grep { id_cmp($_->{id}, $last) > 0 } @now;
        my $r = $srv->sse_connect("/events/$ch", headers => { 'Last-Event-ID' => $last });
        my @res = $r->read_events(count => scalar @want, timeout => 10);
        push @res, $r->read_events(timeout => 0.3);
        is_deeply([ids_of(@res)], [ids_of(@want)],
                  "(c) round $round: resuming with its last id gives the " . scalar(@want)
                  . ' kept events after it');
        $r->close;
    }
    ok($srv->wait_stat(subscribers => 0, 5), '(c) all gone');
    $srv->stop;
}

done_testing;
