#!/usr/bin/perl
# A subscriber that joins while its worker has not yet read the newest log
# entries (the wake-up is still queued) gets those events once: in its
# replay, not again live.  The window is made every time: the worker is
# stopped (SIGSTOP) while the resume request reaches it on a kept-alive
# connection and while events are published through the other worker; on
# SIGCONT the worker reads the request before its wake-up, so it
# subscribes with unread entries in the log.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(workers => 2, http => "sse_history 100;\nsse_heartbeat off;\n");

sub ids_of { map { $_->{id} // 'undef' } @_ }

# a kept-alive connection that worker $w answered
sub conn_to {
    my ($w) = @_;
    for (1 .. 200) {
        my $k = $srv->keepalive_conn or next;
        return $k if ($k->{worker} // '') eq $w;
        close $k->{sock};
    }
    return undef;
}

for my $round (1 .. 3) {
    my $ch = "win$round";
    # a subscriber already in the worker: the worker is woken for the
    # channel and its read position holds the log
    my $old = $srv->sse_connect("/events/$ch");
    is($old->status, 200, "round $round: a subscriber of $ch");
    my $w = $old->worker;
    my $k = conn_to($w);
    ok($k, "round $round: a kept-alive connection to worker $w") or next;
    my $e0 = $srv->publish("/pub/$ch", 'before')->{json}{id};
    is_deeply([ids_of($old->read_events(count => 1, timeout => 5))], [$e0],
              "round $round: the subscriber got the first event");

    ok(stop_process($w), "round $round: worker $w stopped");
    my $new = $srv->sse_connect("/events/$ch", sock => $k->{sock}, defer => 1,
                                headers => { 'Last-Event-ID' => $e0 });
    my @e;
    for my $i (1 .. 3) {
        my $r = $srv->publish("/pub/$ch", "while stopped $i");
        is($r->{status}, 201, "round $round: publish $i while worker $w is stopped");
        isnt($r->{worker}, $w, "round $round: publish $i went to the other worker");
        push @e, $r->{json}{id};
    }
    ok(kill('CONT', $w), "round $round: worker $w continued");

    ok($new->wait_headers(5), "round $round: the resumed stream opens");
    is($new->status, 200, "round $round: 200");
    is($new->worker, $w, "round $round: on worker $w, on the kept-alive connection");
    my @got = $new->read_events(count => 3, timeout => 5);
    # a duplicate would follow at once (the queued wake-up) or within the
    # once-a-second read of the log
    push @got, $new->read_events(timeout => 1.5);
    is_deeply([ids_of(@got)], \@e,
              "round $round: the resumed stream gets the 3 events once (replay, not live again)");
    my @old = $old->read_events(count => 3, timeout => 5);
    push @old, $old->read_events(timeout => 0.2);
    is_deeply([ids_of(@old)], \@e, "round $round: the first subscriber gets them once");

    my $live = $srv->publish("/pub/$ch", 'live')->{json}{id};
    for my $p ([$new, 'resumed'], [$old, 'first']) {
        my @l = $p->[0]->read_events(count => 1, timeout => 5);
        push @l, $p->[0]->read_events(timeout => 0.2);
        is_deeply([ids_of(@l)], [$live], "round $round: then the $p->[1] stream gets the live event once");
    }
    $_->close for $old, $new;
}

ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;
