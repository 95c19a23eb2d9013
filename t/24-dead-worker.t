#!/usr/bin/perl
# An old worker that dies (crash, OOM kill) during a reload while it still
# has subscribers is not respawned by the master: the live workers release
# its place in the hub (its subscribers, its read position in the event
# log) within a second or two, so the zone does not fill with events kept
# for a reader that is gone.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(sleep);

my $srv = start_nginx(
    workers => 1,
    http => "sse_zone small:1m;\nclient_max_body_size 8m;\nsse_history 5;\n",
);
$srv->allow_log(qr/exited on signal 9/);

my ($old) = $srv->worker_pids;
my $s = $srv->sse_connect('/events/x');
is($s->status, 200, 'a subscriber on the old worker');

kill 'STOP', $old;                      # stands for "busy when HUP arrives"
kill 'HUP', $srv->pid;
ok(wait_until(sub { grep { $_ != $old } $srv->worker_pids }, 10), 'new worker up');
kill 'KILL', $old;                      # dies before it ends its streams
kill 'CONT', $old;
ok($srv->wait_stat(subscribers => 0, 5), 'its subscriber is no longer counted');
is($srv->stat('workers'), 1, 'status: 1 worker');
like($srv->error_log, qr/releasing the hub slot of exited worker $old/,
     'error.log says the slot of the dead worker was released');

my (@st, $first507);
for my $i (1 .. 200) {
    my $r = $srv->publish('/pub/y', sprintf('%03d ', $i) . ('z' x 20_000));
    push @st, $r->{status};
    $first507 //= $i if $r->{status} == 507;
}
is(scalar(grep { $_ != 201 } @st), 0, '200 x 20 kB with sse_history 5 in a 1 MB zone: all 201')
    or diag("first 507 at publish #$first507; status: " . json_encode($srv->status));
sleep 2;
my $r = $srv->publish('/pub/y', 'small');
is($r->{status}, 201, 'a small publish 2 s later') or diag("got $r->{status}");
$srv->stop;
done_testing;
