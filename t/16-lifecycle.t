#!/usr/bin/perl
# Lifecycle: reload (streams end promptly, the zone with its history and
# ids survives, clients resume), quit with open streams, a worker that dies.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

sub ids_of { map { $_->{id} // 'undef' } @_ }

# --- reload
{
    my $srv = start_nginx(workers => 2, http => "sse_history 100;\n");
    my @s = $srv->sse_connect_many(20, '/events/lc');
    is(scalar(grep { $_->status == 200 } @s), 20, '20 streams before the reload');
    my $e1 = $srv->publish('/pub/lc', 'before reload')->{json}{id};
    for my $s (@s) { $s->read_events(count => 1, timeout => 3) }
    my $pub0 = $srv->stat('events_published');

    my $t0 = time();
    ok($srv->reload, 'reload: new workers are up');
    my $closed = 0;
    for my $s (@s) { $closed++ if $s->is_closed(5) }
    my $dt = time() - $t0;
    is($closed, 20, 'reload: every stream of the old workers ended');
    ok($dt < 4, sprintf('reload: streams ended promptly (%.1fs)', $dt));
    is(scalar(grep { $_->ended_cleanly } @s), 20, 'reload: streams ended with the chunked terminator');
    ok($srv->old_workers_gone(5), 'reload: old workers exited');

    # published while the clients are away
    my @e = map { $srv->publish('/pub/lc', "after reload $_")->{json}{id} } 1 .. 3;
    ok(id_cmp($e[0], $e1) > 0, 'ids keep increasing across the reload');
    is($srv->stat('events_published'), $pub0 + 3, 'counters survive the reload');
    my $g = $srv->http('GET', '/pub/lc');
    is($g->{json}{events}, 4, 'history survives the reload');

    my @r = $srv->sse_connect_many(20, '/events/lc', headers => { 'Last-Event-ID' => $e1 });
    my $ok = 0;
    for my $s (@r) {
        my @ev = $s->read_events(count => 3, timeout => 3);
        push @ev, $s->read_events(timeout => 0.05);
        $ok++ if join(',', ids_of(@ev)) eq join(',', @e);
    }
    is($ok, 20, 'every client resumes with exactly the events it missed');
    my $e5 = $srv->publish('/pub/lc', 'live after reload')->{json}{id};
    my $live = 0;
    for my $s (@r) {
        my @ev = $s->read_events(count => 1, timeout => 3);
        $live++ if @ev && $ev[0]{id} eq $e5;
    }
    is($live, 20, 'and then live events');

    # a second reload while a stream is idle-open
    ok($srv->reload, 'second reload');
    is(scalar(grep { $_->is_closed(5) } @r), 20, 'second reload: streams ended');
    is(scalar(grep { $_->ended_cleanly } @r), 20, 'second reload: with the chunked terminator');
    ok($srv->old_workers_gone(5), 'second reload: old workers exited');
    my $e6 = $srv->publish('/pub/lc', 'after second reload')->{json}{id};
    ok(id_cmp($e6, $e5) > 0, 'ids still increasing');
    is($srv->http('GET', '/pub/lc')->{json}{events}, 6, 'history still there');
    $_->close for @s, @r;
    $srv->stop;
}

# --- quit with open streams: nginx exits promptly
{
    my $srv = start_nginx(workers => 2);
    my @s = $srv->sse_connect_many(50, '/events/q');
    is(scalar(grep { $_->status == 200 } @s), 50, '50 open streams');
    $srv->publish('/pub/q', 'x');
    my $t0 = time();
    $srv->stop;
    my $dt = time() - $t0;
    ok($dt < 4, sprintf('QUIT with 50 open streams: nginx gone in %.1fs', $dt));
    is(scalar(grep { $_->is_closed(1) } @s), 50, 'QUIT: every stream ended');
    is(scalar(grep { $_->ended_cleanly } @s), 50, 'QUIT: with the chunked terminator');
    $_->close for @s;
}

# --- a worker that dies is replaced, the hub stays usable
{
    my $srv = start_nginx(workers => 2, listen_opts => 'reuseport');
    $srv->allow_log(qr/worker process \d+ exited on signal 9/);
    my @s = $srv->sse_connect_many(30, '/events/k');
    my %by;
    push @{ $by{ $_->worker } }, $_ for @s;
    is(scalar keys %by, 2, 'streams on both workers');
    my ($victim) = sort keys %by;
    my ($survivor) = grep { $_ ne $victim } keys %by;
    my $e1 = $srv->publish('/pub/k', 'before kill')->{json}{id};
    $_->read_events(count => 1, timeout => 3) for @s;

    ok(kill('KILL', $victim), "killed worker $victim (SIGKILL)");
    ok(wait_until(sub {
        my @w = $srv->worker_pids;
        @w == 2 && !grep { $_ == $victim } @w;
    }, 10), 'the master started a new worker');
    is(scalar(grep { $_->is_closed(3) } @{ $by{$victim} }), scalar @{ $by{$victim} },
       "streams of the dead worker are gone");
    ok($srv->wait_stat(subscribers => scalar @{ $by{$survivor} }, 5),
       'status: only the surviving worker\'s subscribers are counted')
        or diag('subscribers: ' . $srv->stat('subscribers'));

    my $t0 = time();
    my @e;
    for my $i (1 .. 10) {
        my $r = $srv->publish('/pub/k', "after kill $i", timeout => 5);
        is($r->{status}, 201, "publish $i after the kill") unless $r->{status} == 201;
        push @e, $r->{json}{id};
    }
    ok(time() - $t0 < 5, 'publishing after the kill is not stuck');
    ok(ids_strictly_increasing($e1, @e), 'ids keep increasing after the kill');
    my $ok = 0;
    for my $s (@{ $by{$survivor} }) {
        my @ev = $s->read_events(count => 10, timeout => 3);
        $ok++ if join(',', ids_of(@ev)) eq join(',', @e);
    }
    is($ok, scalar @{ $by{$survivor} }, 'streams on the surviving worker get every event');
    my @n = $srv->sse_connect_many(20, '/events/k', headers => { 'Last-Event-ID' => $e1 });
    my %nw;
    $nw{ $_->worker }++ for @n;
    is(scalar keys %nw, 2, 'new streams land on both workers, the new one included')
        or diag(join ' ', %nw);
    my $good = 0;
    for my $s (@n) {
        my @ev = $s->read_events(count => 10, timeout => 3);
        $good++ if join(',', ids_of(@ev)) eq join(',', @e);
    }
    is($good, 20, 'reconnecting clients resume from the zone on either worker');
    my $e_last = $srv->publish('/pub/k', 'live')->{json}{id};
    is(scalar(grep { my @ev = $_->read_events(count => 1, timeout => 3); @ev && $ev[0]{id} eq $e_last } @n),
       20, 'live delivery to the new worker works');
    $_->close for @s, @n;
    ok($srv->wait_stat(subscribers => 0, 5), 'subscriber count returns to 0');
    $srv->stop;
}

done_testing;
