#!/usr/bin/perl
# Redis mode: a TIME answer with no time in it (a proxy or a Redis-alike
# that answers nonsense) must not break the publish deadline.  The worker
# logs it and keeps taking Redis's clock to be this host's; a publish that
# reaches Redis after its publisher was told 503 is still refused, and
# delivered nowhere.  (Read as numbers, "abc" made the deadline negative,
# i.e. "never late" once unsigned: the event was logged and delivered
# after its 503.)
# A proxy answers the first TIME itself, then holds the link's first
# EVALSHA (the lease request) and all after it, the POST's script
# included, for 3 s: longer than sse_redis_timeout.
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
                              time_reply => "*2\r\n\$3\r\nabc\r\n\$1\r\n0\r\n",
                              hold_cmd => 'EVALSHA', hold_time => 3);
my $N = start_node(url => $F->url, workers => 1, ready => 0, http => "sse_redis_timeout 1s;\n");
ok(wait_until(sub { $F->log_text =~ /^answered TIME$/m }, 10, 0.01),
   'the proxy answered the first TIME with "abc" seconds') or diag($F->log_text);
ok(wait_until(sub { $N->error_log =~ /redis answered TIME with no time/ }, 5, 0.05),
   'the worker logs that the answer holds no time');
ok(wait_redis($N, 'up', 5), 'the link is up');
ok(wait_until(sub { $F->log_text =~ /^hold$/m }, 5, 0.01), 'the proxy holds the link from its lease request on');

my $s = $N->sse_connect('/events/news');
is($s->status, 200, 'a stream');
my $t0 = time;
my $res = $N->publish('/pub/news', 'late');
check_json_error($res, 503, 'a POST that Redis does not answer within sse_redis_timeout');
ok(time - $t0 < 2.5, sprintf('answered in %.2f s', time - $t0));
ok(wait_until(sub { $F->log_text =~ /^release( on close)?$/m }, 5, 0.05), 'the proxy lets the held commands through');
sleep 1;
my @log = $r->log_of('sse:log', 'news');
is(scalar @log, 0, 'Redis refused the late script: the event answered 503 is not in the log');
is(scalar($s->read_events(timeout => 0.5)), 0, 'and the stream got nothing');

$res = $N->publish('/pub/news', 'after');
is($res->{status}, 201, 'a POST now: 201');
my @e = $s->read_events(count => 1, timeout => 5);
is($e[0]{data} // '', 'after', 'delivered');
$s->close;
$N->stop;
$F->stop;
$r->stop;
done_testing;
