#!/usr/bin/perl
# Redis mode: a publish is checked against its deadline on Redis's clock,
# and the offset between the clocks is known only once Redis has answered
# TIME.  A POST that comes before that answer (a worker just started, a
# link just back) must still get 201: until TIME is read, Redis's clock is
# taken to be this host's.  (With no offset at all, the deadline was the
# host's uptime in ms, decades in Redis's past: such POSTs were refused
# 503 at every worker start.)
# A proxy before the real Redis holds the command link's first TIME, and
# all that follows it on that link, for 2 s; a POST is made meanwhile.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;

my $HOLD = 2;
my $r = SSERedis->start;
my $F = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port, hold_time => $HOLD);
my $N = start_node(url => $F->url, workers => 1, ready => 0,
                   http => "sse_redis_timeout 5s;\n");

ok(wait_until(sub { $F->log_text =~ /^hold$/m }, 10, 0.01),
   'the worker asked Redis for its TIME, held back by the proxy')
    or diag($F->log_text);
ok(wait_redis($N, 'up', 5), 'the link is up meanwhile');
my $s = $N->sse_connect('/events/news');
is($s->status, 200, 'a stream');

my $t0 = time();
my $res = $N->publish('/pub/news', 'before TIME');
my $dt = time() - $t0;
my @log = split /\n/, $F->log_text;
my ($hold) = grep { $log[$_] eq 'hold' } 0 .. $#log;
ok(defined $hold && !grep({ $_ eq 'release' } @log[0 .. $hold]), 'the POST went before the TIME answer came');
ok($dt > 0.5, sprintf('its answer waited for the held TIME (%.1f s)', $dt));
is($res->{status}, 201, 'the POST made before Redis answered TIME: 201')
    or diag($res->{body} . "\n" . $N->error_log);
my @ev = $s->read_events(count => 1, timeout => 5);
is(($ev[0]{id} // '') . ' ' . ($ev[0]{data} // ''), ($res->{json}{id} // '?') . ' before TIME',
   'the stream got it, with the id of the answer');
my @entries = $r->log_of('sse:log', 'news');
is(join(',', map { $_->{fields}{data} } @entries), 'before TIME', 'Redis logged it once');
unlike($N->error_log, qr/SSETIMEOUT|refused/, 'no publish was refused as too late');

$res = $N->publish('/pub/news', 'after TIME');
is($res->{status}, 201, 'a POST after the TIME answer: 201');

$s->close;
$N->stop;
$F->stop;

# a node of one worker behind a proxy that holds its first TIME for
# $hold s; back once the link is up and the TIME held
sub held_node {
    my ($tag, $hold) = @_;
    my $G = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port, hold_time => $hold);
    my $M = start_node(url => $G->url, workers => 1, ready => 0, http => "sse_redis_timeout 5s;\n");
    ok(wait_until(sub { $G->log_text =~ /^hold$/m }, 10, 0.01), "$tag: the first TIME is held back");
    ok(wait_redis($M, 'up', 5), "$tag: the link is up");
    return ($G, $M);
}

# a POST sent, its answer read later
sub post_async {
    my ($M, $path, $type, $body) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $M->port, Proto => 'tcp')
        or die "connect: $!";
    print $sock "POST $path HTTP/1.0\r\nContent-Type: $type\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    return $sock;
}

# the link breaks while a POST waits for the TIME answer: 503 at once,
# not after sse_redis_timeout
{
    my ($G, $M) = held_node('cut', 30);
    my $sock = post_async($M, '/pub/news', 'text/plain', 'wait');
    sleep 0.3;
    ok($G->cut, 'cut: the link breaks while the POST waits for the TIME answer');
    my $t0 = time();
    local $/;
    my $answer = <$sock> // '';
    my $dt = time() - $t0;
    like($answer, qr{\AHTTP/1\.\d 503 .*"error":"redis unavailable"}s, 'cut: the POST gets 503 "redis unavailable"');
    ok($dt < 2, sprintf('cut: at once (%.2f s), not after sse_redis_timeout (5 s)', $dt));
    sleep 0.5;
    is(join(',', map { $_->{fields}{data} } $r->log_of('sse:log', 'news')), 'before TIME,after TIME',
       'cut: Redis did not log it');
    $M->stop;
    $G->stop;
}
# a group that waits for the TIME answer is not grown past its size (1000
# entries): a publish that would join a full one gets 503 at once
{
    my ($G, $M) = held_node('full', 2);
    my $sock = post_async($M, '/pub/bulk', 'text/event-stream',
                          join '', map { "data: b$_\n\n" } 1 .. 1000);
    sleep 0.3;
    my $t0 = time();
    my $res = $M->publish('/pub/bulk', 'one more');
    check_json_error($res, 503, 'full: a POST that would join a full group waiting for TIME');
    ok(time() - $t0 < 1, sprintf('full: answered at once (%.2f s)', time() - $t0));
    local $/;
    my $answer = <$sock> // '';
    like($answer, qr{\AHTTP/1\.\d 201 }, 'full: the 1000 events that filled the group: 201 once TIME is answered');
    is(scalar($r->log_of('sse:log', 'bulk')), 1000, 'full: Redis logged those 1000, not the one answered 503');
    $M->stop;
    $G->stop;
}
# a worker that has just started (a reload) and is still making its link:
# a POST waits for the link instead of getting 503 at once
{
    my $G = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port,
                                  hold_cmd => 'SCRIPT', hold_time => 1);
    my $M = start_node(url => $G->url, workers => 1, ready => 0, http => "sse_redis_timeout 5s;\n");
    ok(wait_until(sub { $G->log_text =~ /^hold$/m }, 10, 0.01), 'starting: the link\'s handshake is held back');
    my $t0 = time();
    my $res = $M->publish('/pub/starting', 'while the link is made');
    is($res->{status}, 201, 'starting: a POST while the link is being made: 201')
        or diag($res->{body});
    ok(time() - $t0 > 0.5, sprintf('starting: once the link was up (%.2f s)', time() - $t0));
    is(join(',', map { $_->{fields}{data} } $r->log_of('sse:log', 'starting')), 'while the link is made',
       'starting: Redis logged it');
    $M->stop;
    $G->stop;
}
$r->stop;
done_testing;
