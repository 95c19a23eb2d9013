#!/usr/bin/perl
# Memory of subscribers that come and go, without valgrind: a worker's
# private memory must not grow however many subscribers it has served.
# Rounds of 2,000 subscribers (of one and of two channels) connect, get an
# event and leave; after a warm-up round, 5 more rounds (10,000
# subscribers) must leave the worker's data size (VmData: what malloc took
# from the kernel) and its RSS where they were, to within 256 kB: a leak
# of 200 bytes per subscriber would be 2 MB.  (The zone's bytes are
# t/14-memory.t.)
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $N      = 2000;
my $ROUNDS = 5;
my $SLACK  = 256;       # kB

# one worker: every subscriber is in the process measured
my $srv = start_nginx(workers => 1, http => "sse_history 5;\nsse_heartbeat off;\n");
my ($pid) = $srv->worker_pids;
ok($pid, "the worker: $pid");

sub mem { proc_mem($pid) }

my $payload = 'm' x 100;
sub round {
    my ($tag) = @_;
    my $t0 = time();
    my @s = $srv->sse_connect_many($N, sub {
        $_[0] % 4 == 0 ? "/events/lk,lk$_[0]" : "/events/lk" });
    is(scalar(grep { $_->status == 200 } @s), $N, "round $tag: $N subscribers open");
    ok($srv->wait_stat(subscribers => $N, 10), "round $tag: status counts $N");
    my $r = $srv->publish('/pub/lk', $payload);
    is($r->{json}{subscribers}, $N, "round $tag: an event for all $N");
    my $got = 0;
    for my $s (@s) {
        my @ev = $s->read_events(count => 1, timeout => 5);
        $got++ if @ev == 1 && $ev[0]{id} eq $r->{json}{id};
    }
    is($got, $N, "round $tag: every subscriber got it");
    my $i = 0;
    for my $s (@s) { $i++ % 2 ? $s->close : $s->abort }
    ok($srv->wait_stat(subscribers => 0, 10), "round $tag: all gone");
    ok(wait_until(sub { $srv->stat('channels') == 1 }, 10), "round $tag: only lk is left");
    sleep 0.2;
    my $m = mem();
    diag(sprintf "round %s: %.1fs, VmData %d kB, VmRSS %d kB", $tag, time() - $t0,
         $m->{data}, $m->{rss});
    return $m;
}

my $m0 = round('warm');
ok($m0->{data} > 0 && $m0->{rss} > 0, 'the worker\'s memory can be read');
my $m;
$m = round($_) for 1 .. $ROUNDS;
is(($srv->worker_pids)[0], $pid, 'the same worker throughout');

my $subs = $N * $ROUNDS;
for my $k ([data => 'VmData'], [rss => 'VmRSS']) {
    my ($key, $name) = @$k;
    my $grow = $m->{$key} - $m0->{$key};
    ok($grow < $SLACK, sprintf('%s grew by %d kB over %d subscribers (%.1f bytes each), less than %d kB',
                               $name, $grow, $subs, $grow * 1024 / $subs, $SLACK));
}

$srv->stop;
done_testing;
