#!/usr/bin/perl
# A stream of several channels ends in order.  When its worker reads, in
# one go, a DELETE of channel A followed by a new event of A and an event
# of B, the stream ends at the DELETE: nothing published after it is
# written first.  (Had B's event been written before the end, the browser
# would resume after B's id and never get A's new event.)  Resuming with
# the stream's last id then gives A's new event and B's, in id order.
#
# "In one go" is made every time: the worker holding the stream is stopped
# (SIGSTOP) while the DELETE and the publishes go through the other
# worker; on SIGCONT it reads them all at once.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(workers => 2, http => "sse_history 100;\nsse_heartbeat off;\n");

sub ids_of { map { $_->{id} // 'undef' } @_ }

# a kept-alive connection that a worker other than $w answered: requests
# sent on it while $w is stopped are answered at once, by that worker
sub conn_not_to {
    my ($w) = @_;
    for (1 .. 200) {
        my $k = $srv->keepalive_conn or next;
        return $k if ($k->{worker} // '') ne $w;
        close $k->{sock};
    }
    return undef;
}

# a request answered by a worker other than $w (the stopped one)
sub not_on {
    my ($w, $what, $r) = @_;
    isnt($r->{worker} // '', $w, "$what went to the other worker")
        or diag("answered by " . ($r->{worker} // 'nobody') . ", status $r->{status}");
    return $r;
}

for my $round (1 .. 6) {
    my ($A, $B) = ("stopa$round", "stopb$round");
    my $s = $srv->sse_connect("/events/$A,$B");
    is($s->status, 200, "round $round: a stream of $A,$B");
    my $w = $s->worker;
    ok($w, "round $round: on worker $w");

    # the stream has an id of its own before the worker is stopped
    my $e0 = $srv->publish("/pub/$A", "a0 $round")->{json}{id};
    is_deeply([ids_of($s->read_events(count => 1, timeout => 5))], [$e0],
              "round $round: the stream got A's first event");

    my $k = conn_not_to($w);
    ok($k, "round $round: a kept-alive connection to worker " . ($k ? $k->{worker} : '?'))
        or next;
    my $pub = sub { $srv->keepalive_http($k, 'POST', "/pub/$_[0]", body => $_[1]) };

    ok(stop_process($w), "round $round: worker $w stopped");
    my @before;       # events the stream must still get: published before the DELETE
    if ($round % 2) {
        my $r = not_on($w, "round $round: B's event before the DELETE",
                       $pub->($B, "b0 $round"));
        is($r->{status}, 201, "round $round: B's event before the DELETE published");
        push @before, $r->{json}{id};
    }
    my $d = not_on($w, "round $round: DELETE $A", $srv->keepalive_http($k, 'DELETE', "/pub/$A"));
    is($d->{status}, 200, "round $round: DELETE $A: 200");
    my $a1 = not_on($w, "round $round: A's new event", $pub->($A, "a1 $round"));
    my $b1 = not_on($w, "round $round: B's event", $pub->($B, "b1 $round"));
    is($a1->{status}, 201, "round $round: A's new event published");
    is($b1->{status}, 201, "round $round: B's event published");
    ($a1, $b1) = ($a1->{json}{id}, $b1->{json}{id});
    ok(kill('CONT', $w), "round $round: worker $w continued");
    close $k->{sock};

    # the stream ends; what it got last is what it got before the DELETE
    my @got = $s->read_events(timeout => 8);
    ok($s->ended_cleanly, "round $round: the stream ended cleanly (chunked terminator)")
        or diag("eof: " . ($s->{eof} ? 1 : 0) . ", protocol error: "
                . ($s->{protocol_error} // 'none'));
    is_deeply([ids_of(@got)], \@before,
              "round $round: the stream got " . (@before ? "B's earlier event" : 'nothing')
              . " and no event published after the DELETE");
    $s->close;

    # the browser resumes with the last id the stream gave it
    my $last = $s->last_event_id;
    is($last, @before ? $before[-1] : $e0, "round $round: the stream's last id");
    my $r = $srv->sse_connect("/events/$A,$B", headers => { 'Last-Event-ID' => $last });
    is($r->status, 200, "round $round: the resumed stream opens");
    my @res = $r->read_events(count => 2, timeout => 5);
    push @res, $r->read_events(timeout => 0.5);
    is_deeply([ids_of(@res)], [$a1, $b1],
              "round $round: resuming gives A's new event, then B's, once");
    is_deeply([map { $_->{data} } @res], ["a1 $round", "b1 $round"],
              "round $round: with their data");
    $r->close;
}

ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;
