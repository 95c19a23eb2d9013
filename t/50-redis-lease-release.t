#!/usr/bin/perl
# Redis mode: a node that stops gives the PUBLISH lease back as it goes, so
# another node converts PUBLISH at once, not after the lease's 3 s expiry
# (which is for a node that dies).  Both ways nginx stops: SIGTERM (fast:
# nginx -s stop) and SIGQUIT (graceful: nginx -s quit).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
for my $sig (qw(TERM QUIT)) {
    my $A = start_node(redis => $r, name => "A ($sig)");
    my $B = start_node(redis => $r, name => "B ($sig)");
    my @h;
    ok(wait_until(sub { @h = ingress_nodes($A, $B); @h == 1 }, 8, 0.1), "$sig: one node holds the lease");
    my ($H, $O) = @h && $h[0] == $A ? ($A, $B) : ($B, $A);
    my $token = $r->cmd('GET', 'sse:ingress');
    ok(defined $token && length $token, "$sig: the lease key holds the holder's token");
    my @pids = ($H->pid, $H->child_pids);
    kill $sig, $H->pid;
    ok(wait_until(sub { !grep { kill 0, $_ } @pids }, 10, 0.02), "$sig: the holder's master and workers are gone");
    my $now = $r->cmd('GET', 'sse:ingress');
    isnt($now // '(none)', $token, "$sig: the moment it is gone, its token is no longer the lease (given back, not left to expire)");
    my $t0 = time;
    ok(wait_until(sub { ingress_nodes($O) == 1 }, 3, 0.05), "$sig: the other node takes the lease");
    my $dt = time - $t0;
    ok($dt < 2, sprintf("$sig: within %.2f s (the lease would expire after 3 s)", $dt));
    my $s = $O->sse_connect('/events/news');
    sleep 0.3;
    $r->cmd('PUBLISH', 'sse:news', "after $sig");
    my @e = $s->read_events(count => 1, timeout => 5);
    is($e[0]{data} // '', "after $sig", "$sig: a PUBLISH is converted by the other node");
    $s->close;
    $H->{stopped} = 1;
    $O->stop;
}
$r->stop;
done_testing;
