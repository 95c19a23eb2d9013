#!/usr/bin/perl
# Redis mode: the worker that reads the node's log stands still (SIGSTOP:
# as a worker whose pid is taken for alive, but whose loop no longer runs,
# or whose pid was reused by another process of the same user).  Another
# worker of the node takes the log over within about 10 s, and delivery
# goes on; when the first one runs again it sees it was replaced, hands
# over, and nothing is delivered twice.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $A = start_node(redis => $r, name => 'A', workers => 2);
my ($reader) = $A->error_log =~ /(\d+)#\d+: [^\n]*sse: this worker reads the redis log/;
ok($reader, "a worker reads the log ($reader)");
my @workers = $A->child_pids;
ok((grep { $_ == $reader } @workers), 'it is one of the workers');

# streams on both workers (each worker takes its own share of accepts)
my @s = map { $A->sse_connect('/events/news') } 1 .. 8;
is(join(',', map { $_->status } @s), join(',', (200) x 8), 'eight streams');

my $res = $A->publish('/pub/news', 'before');
is($res->{status}, 201, 'POST before the stall');
my $live = 0;
for my $s (@s) { my @e = $s->read_events(count => 1, timeout => 5); $live++ if ($e[0]{data} // '') eq 'before' }
is($live, 8, 'every stream got it');

my $mark = $A->log_mark;
ok(stop_process($reader), 'the reader stands still');
my $t0 = time;
# streams opened now are on the running worker: the stopped one accepts none
my @run = map { $A->sse_connect('/events/news') } 1 .. 4;
is(join(',', map { $_->status } @run), '200,200,200,200', 'four streams opened while the reader stands still');
# a backend XADDs while the reader stands still
my $id = $r->xadd('sse:log', channel => 'news', data => 'during the stall');
my $took = wait_until(sub { $A->error_log_since($mark) =~ /reads the redis log from/ }, 20, 0.2);
my $dt = time - $t0;
ok($took, sprintf 'another worker reads the log after %.1f s', $dt);
ok($dt < 15, 'within about 10 s');
for my $s (@run) {
    my @e = $s->read_events(count => 1, timeout => 5);
    is($e[0]{data} // '', 'during the stall', 'a stream on the running worker gets the entry');
}
# the first eight: those on the running worker have it now, the others
# get it once their worker runs again
my @stopped_side;
for my $s (@s) {
    my @e = $s->read_events(count => 1, timeout => 1);
    push @stopped_side, $s unless ($e[0]{data} // '') eq 'during the stall';
}
push @s, @run;

kill 'CONT', $reader;
my $handed = wait_until(sub { $A->error_log_since($mark) =~ /reads the redis log now/ }, 5, 0.1);
ok($handed, 'the first worker, running again, sees it was replaced and hands over');
# handing over closes its links: that is not the node's link going down
sleep 0.5;
is(redis_state($A), 'up', 'the status still says "redis":"up": the worker that handed over does not speak for the node');
ok(wait_until(sub { ingress_nodes($A) }, 5, 0.1), 'and the node, one of its workers, still converts PUBLISH (redis_ingress)');
# its own streams get the entry now, once
for my $s (@stopped_side) {
    my @e = $s->read_events(count => 1, timeout => 5);
    is($e[0]{data} // '', 'during the stall', 'a stream on the stopped worker gets the entry once it runs');
}
$res = $A->publish('/pub/news', 'after');
is($res->{status}, 201, 'POST after');
for my $i (0 .. $#s) {
    my @e = $s[$i]->read_events(count => 1, timeout => 5);
    push @e, $s[$i]->read_events(timeout => 0.3);
    is(join(',', map { $_->{data} } @e), 'after', "stream $i: the next event, and nothing twice");
}
$_->close for @s;
$A->stop;
$r->stop;
done_testing;
