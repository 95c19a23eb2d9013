#!/usr/bin/perl
# Redis mode: a worker that stops while its request for the PUBLISH lease
# is on its way gives the lease back too.  Redis may grant that request
# after the worker has let go of everything; the release goes after it on
# the same link, so the lease is freed at once, not held by a token no one
# renews until it expires (3 s in which another node converts no PUBLISH).
# A proxy before Redis holds the node's first lease request (its first
# EVALSHA, with no POST made) and what follows it, and delivers them when
# the worker closes its link.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $F = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port,
                              hold_cmd => 'EVALSHA', hold_time => 30);
my $A = start_node(url => $F->url, workers => 1, ready => 0);
ok(wait_until(sub { $F->log_text =~ /^hold$/m }, 10, 0.01),
   'the node asked for the lease; the proxy holds the request')
    or diag($F->log_text);
is($r->cmd('GET', 'sse:ingress'), undef, 'Redis has not seen it: no one holds the lease');

my @pids = ($A->pid, $A->child_pids);
kill 'QUIT', $A->pid;
ok(wait_until(sub { !grep { kill 0, $_ } @pids }, 10, 0.02), 'the node stops (nginx -s quit)');
ok(wait_until(sub { $F->log_text =~ /^release on close$/m }, 5, 0.01),
   'the proxy delivers what the worker sent before it closed its link');
sleep 0.3;
my @cmds = grep { $_ eq 'EVALSHA' } $F->commands;
ok(@cmds >= 2, 'the worker sent the lease request and, after it, the release (' . @cmds . ' EVALSHA)');
is($r->cmd('GET', 'sse:ingress'), undef, 'the lease Redis granted on the way is free again at once');

# another node converts PUBLISH at once
my $B = start_node(redis => $r, name => 'B', workers => 1);
my $t0 = time;
ok(wait_until(sub { ingress_nodes($B) == 1 }, 5, 0.05), 'another node takes the lease');
ok(time - $t0 < 2, sprintf('within %.2f s of starting (not after the 3 s expiry)', time - $t0));
my $s = $B->sse_connect('/events/news');
sleep 0.3;
$r->cmd('PUBLISH', 'sse:news', 'converted');
my @e = $s->read_events(count => 1, timeout => 5);
is($e[0]{data} // '', 'converted', 'a PUBLISH is converted by it');
$s->close;
$A->{stopped} = 1;
$B->stop;
$F->stop;
$r->stop;
done_testing;
