#!/usr/bin/perl
# Redis mode with this host's wall clock off Redis's.  Event ids are
# Redis's (<Redis ms>-<seq>): whatever compares an id or a deadline with
# "now" must use Redis's clock, as the worker knows it from TIME, and not
# this host's.
#  A. Redis 20 s ahead: a POST made before the first TIME answer gets 201
#     (its deadline was this host's clock: Redis refused it, 503);
#  B. Redis 20 s ahead: a resume on a node that has not yet read its
#     Last-Event-ID waits for the node (the id was taken for one "from the
#     far future", > now + 10 s: the stream went live at once and got
#     again what the client had);
#  C. Redis 2 h behind: the history keeps its events for sse_history_ttl
#     (1h): they were taken for 2 h old, dropped as they came in, and a
#     resume got nothing;
#  D. Redis 2 h ahead: an event kept for 1 s is gone after 1 s (it was
#     taken for one 2 h in the future, kept 2 h);
#  E. the node's link moves to another Redis whose clock is 20 s behind the
#     first's (a failover): a POST made before the new Redis has answered
#     TIME, answered 503, is not logged by it (its deadline was taken on
#     the first Redis's clock, 20 s late for the new one, which took it).
# nginx runs with an LD_PRELOAD shim (t/skew/skew.c) that moves its wall
# clock only; its monotonic clock, redis-server and the test keep the real
# time.  SKEW_CONTROL=1 runs the same with no skew.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);

my $tmp = tempdir('sse-skew-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $so = "$tmp/skew.so";
ok(system('cc', '-shared', '-fPIC', '-O2', '-o', $so, "$FindBin::Bin/skew/skew.c", '-ldl') == 0,
   'the clock shim builds') or BAIL_OUT('cc could not build t/skew/skew.c (make deps installs gcc)');

# a node whose wall clock is $skew_ms off (negative: behind, Redis ahead)
sub skewed_node {
    my ($skew_ms, %o) = @_;
    local $ENV{LD_PRELOAD} = $so;
    local $ENV{SSE_SKEW_MS} = $ENV{SKEW_CONTROL} ? 0 : $skew_ms;
    return start_node(%o);
}

# the shim works: the node's Date header is off by the skew
{
    my $r = SSERedis->start;
    my $N = skewed_node(-20000, redis => $r, workers => 1, ready => 0);
    my $date = $N->http('GET', '/status')->{headers}{date} // '';
    my %mon = (Jan => 0, Feb => 1, Mar => 2, Apr => 3, May => 4, Jun => 5,
               Jul => 6, Aug => 7, Sep => 8, Oct => 9, Nov => 10, Dec => 11);
    my $t = $date =~ /(\d+) (\w{3}) (\d{4}) (\d+):(\d+):(\d+) GMT/
        ? timegm($6, $5, $4, $1, $mon{$2}, $3) : -1;
    my $want = $ENV{SKEW_CONTROL} ? 0 : 20;
    ok(abs(time() - $want - $t) < 3, "the node's clock is $want s behind (Date: $date)");
    $N->stop;
    $r->stop;
}

# A
{
    my $r = SSERedis->start;
    my $F = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port, hold_time => 2);
    my $N = skewed_node(-20000, url => $F->url, workers => 1, ready => 0,
                        http => "sse_redis_timeout 5s;\n");
    ok(wait_until(sub { $F->log_text =~ /^hold$/m }, 10, 0.01), 'A: the first TIME is held back');
    ok(wait_redis($N, 'up', 5), 'A: the link is up');
    my $res = $N->publish('/pub/news', 'before TIME');
    is($res->{status}, 201, 'A: Redis 20 s ahead: a POST before the TIME answer gets 201')
        or diag($res->{body});
    my @log = $r->log_of('sse:log', 'news');
    is(join(',', map { $_->{fields}{data} } @log), 'before TIME', 'A: Redis logged it once');
    $N->stop;
    $F->stop;
    $r->stop;
}

# B
{
    my $r = SSERedis->start;
    my $P = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
    my $A = skewed_node(-20000, redis => $r, name => 'A');
    my $B = skewed_node(-20000, url => $P->url, name => 'B');
    $P->cut;
    ok(wait_redis($B, 'down', 10), 'B: node B is cut off');
    my @ids;
    for my $i (1 .. 3) {
        my $res = $A->publish('/pub/news', "e$i");
        is($res->{status}, 201, "B: POST e$i on A");
        push @ids, $res->{json}{id};
    }
    my $sb = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[-1] });
    is($sb->status, 200, 'B: a stream resumes with e3 on the node that has not read it');
    $P->restore;
    ok(wait_redis($B, 'up', 10), 'B: node B is back');
    my $res = $A->publish('/pub/news', 'e4');
    my @b = $sb->read_events(count => 1, timeout => 10);
    sleep 1;
    push @b, $sb->read_events(timeout => 0);
    is(join(' ', map { $_->{data} } @b), 'e4', 'B: Redis 20 s ahead: the stream that had e3 gets only e4');
    $sb->close;
    $A->stop;
    $B->stop;
    $P->stop;
    $r->stop;
}

# C
{
    my $r = SSERedis->start;
    my $N = skewed_node(7200 * 1000, redis => $r, name => 'C');
    my @ids;
    for my $i (1 .. 3) {
        my $res = $N->publish('/pub/news', "e$i");
        is($res->{status}, 201, "C: POST e$i");
        push @ids, $res->{json}{id};
    }
    sleep 0.5;
    my $g = $N->http('GET', '/pub/news');
    is($g->{json}{events} // 0, 3, 'C: Redis 2 h behind: the node keeps the 3 events (sse_history_ttl 1h)');
    my $s = $N->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[0] });
    my @e = $s->read_events(count => 2, timeout => 3);
    is(join(' ', map { $_->{data} } @e), 'e2 e3', 'C: a resume after e1 gets e2 e3');
    $s->close;
    $N->stop;
    $r->stop;
}

# D
{
    my $r = SSERedis->start;
    my $N = skewed_node(-7200 * 1000, redis => $r, name => 'D', http => "sse_history_ttl 1s;\n");
    my $res = $N->publish('/pub/news', 'e1');
    is($res->{status}, 201, 'D: POST e1');
    ok(wait_until(sub { ($N->http('GET', '/pub/news')->{json}{events} // 0) == 1 }, 5, 0.05),
       'D: the node keeps it');
    sleep 2.5;
    my $g = $N->http('GET', '/pub/news');
    is($g->{json}{events} // 0, 0, 'D: Redis 2 h ahead: after 2.5 s an event kept for 1 s is gone');
    my $s = $N->sse_connect('/events/news', headers => { 'Last-Event-ID' => '0-1' });
    is(scalar($s->read_events(timeout => 1)), 0, 'D: a resume from the start gets nothing');
    $s->close;
    $N->stop;
    $r->stop;
}

# E (here the shim moves the second redis-server's clock, not nginx's)
{
    my $r1 = SSERedis->start;
    my $r2 = do {
        local $ENV{LD_PRELOAD} = $so;
        local $ENV{SSE_SKEW_MS} = $ENV{SKEW_CONTROL} ? 0 : -20000;
        SSERedis->start;
    };
    my $t1 = $r1->cmd('TIME');
    my $t2 = $r2->cmd('TIME');
    my $d = ref $t1 && ref $t2 ? $t1->[0] - $t2->[0] : 0;
    is(abs($d - ($ENV{SKEW_CONTROL} ? 0 : 20)) <= 1 ? 1 : 0, 1, "E: the second Redis's clock is ${d} s behind the first's");
    my $P1 = SSERedis::Fake->start(mode => 'proxy', backend_port => $r1->port);
    my $N = start_node(url => $P1->url, workers => 1, name => 'E', http => "sse_redis_timeout 1s;\n");
    is($N->publish('/pub/news', 'on the first')->{status}, 201, 'E: a POST through the first Redis');
    my $port = $P1->port;
    $P1->stop;
    my $P2 = SSERedis::Fake->start(mode => 'proxy', backend_port => $r2->port, port => $port,
                                   hold_time => 30);
    ok(wait_until(sub { $P2->log_text =~ /^hold$/m }, 10, 0.01),
       "E: the link is made again, to the second Redis, whose TIME answer is held back");
    my $res = $N->publish('/pub/news', 'before its TIME');
    is($res->{status}, 503, 'E: a POST before its answer: 503 within sse_redis_timeout');
    ok(wait_until(sub { $P2->log_text =~ /^release on close$/m }, 5, 0.05),
       'E: the link is given up; what it sent reaches the second Redis');
    sleep 0.5;
    is(join(',', map { $_->{fields}{data} } $r2->log_of('sse:log', 'news')), '',
       'E: the second Redis did not log the POST answered 503');
    $N->stop;
    $P2->stop;
    $r1->stop;
    $r2->stop;
}

done_testing;
