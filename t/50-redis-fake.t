#!/usr/bin/perl
# Redis mode against servers that are not a healthy Redis (SSERedis::Fake):
#   - loading: "-LOADING ..." to every command for 4 s, then a real Redis:
#     the node is "down" and answers POST 503 meanwhile, then comes up by
#     itself and publishing works (no reload);
#   - garbage (random bytes), silent (never answers), close_mid_reply
#     (half a reply, then close): nginx logs it, never crashes (no worker
#     respawned, no alert/crit, see SSETest stop()), keeps serving its
#     local streams and other requests at once, answers POST 503 within
#     sse_redis_timeout (+ margin), says "down", and does not flood its
#     error.log.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $http = "sse_heartbeat 1s;\nsse_redis_timeout 1s;\n";
my $extra = "location = /ping { return 200 \"pong\\n\"; }\n";

# ---------------------------------------------------------------- -LOADING
{
    my $F = SSERedis::Fake->start(mode => 'loading', loading_for => 4, backend_port => $r->port);
    my $N = start_node(url => $F->url, http => $http, ready => 0, server_extra => $extra);
    ok(wait_until(sub { $F->replies >= 1 }, 3), 'loading: the node sent commands and got -LOADING')
        or diag($F->log_text);
    my $left = $F->loading_left;
    ok($left > 0.5, sprintf('loading: %.1fs of loading left for the checks below', $left));
    is(redis_state($N), 'down', 'loading: status "down" while Redis answers -LOADING');
    my $t0 = time();
    my $res = $N->publish('/pub/news', 'while loading');
    check_json_error($res, 503, 'loading: POST');
    is($res->{json}{error} // '', 'redis unavailable', 'loading: the error is "redis unavailable"');
    ok(time() - $t0 < 3, sprintf('loading: answered in %.2fs', time() - $t0));
    ok($F->loading_left > 0, 'loading: those answers came while the fake was still loading');
    ok(node_ready($N, $F->loading_left + 12), 'loading over: the node comes up by itself, publishing works');
    diag(sprintf('loading: up and publishing %.1fs after the loading ended', time() - $F->{t0} - 4));
    my $s = $N->sse_connect('/events/news');
    $res = $N->publish('/pub/news', 'after loading');
    is($res->{status}, 201, 'loading over: POST 201');
    my @ev = $s->read_events(count => 1, timeout => 5);
    is(($ev[0]{id} // '') . ' ' . ($ev[0]{data} // ''), ($res->{json}{id} // '?') . ' after loading',
       'loading over: the subscriber gets it with its id');
    my @log = $r->log_of('sse:log', 'news');
    is(join(',', map { $_->{fields}{data} } @log), 'after loading',
       'the real Redis holds that event, and not the one refused while loading');
    my @cmds = $F->commands;
    diag('loading: the node sent ' . @cmds . ' commands through the fake, '
         . $F->replies . ' were answered -LOADING, ' . $F->accepts . ' connections');
    $s->close;
    $N->stop;
    $F->stop;
}

# ---------------------------------------------------------------- a Redis that hangs, then comes back
# (a proxy that lets nothing through while keeping every connection open,
# then relays new connections): the node must see the hung links as dead
# by itself, answer 503 meanwhile, and come back without a reload.
{
    my $P = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
    my $N = start_node(url => $P->url, http => $http, name => 'H (through a proxy that will hang)');
    my $s = $N->sse_connect('/events/hang');
    ok($P->hang, 'hang: the proxy lets nothing through any more');
    my $t0 = time();
    my $res = $N->publish('/pub/hang', 'while hung');
    my $dt = time() - $t0;
    check_json_error($res, 503, 'hang: POST');
    ok($dt < 3, sprintf('hang: answered in %.2fs (sse_redis_timeout 1s + margin)', $dt));
    ok(wait_redis($N, 'down', 10), 'hang: status "down" once the links are seen dead')
        or diag('status: ' . redis_state($N));
    ok(!$s->is_closed(0) && $s->wait_for(qr/: heartbeat\n\n/, 3), 'hang: the stream stays open with heartbeats');
    ok($P->restore, 'hang: the proxy relays new connections again');
    ok(node_ready($N, 15), 'hang: the node is up and publishing again, without reload');
    $res = $N->publish('/pub/hang', 'after the hang');
    is($res->{status}, 201, 'hang: POST 201');
    my @ev = $s->read_events(count => 1, timeout => 5);
    is(($ev[0]{id} // '') . ' ' . ($ev[0]{data} // ''), ($res->{json}{id} // '?') . ' after the hang',
       'hang: the open stream gets it');
    is(scalar(grep { ($_->{fields}{data} // '') eq 'while hung' } $r->xrange_all('sse:log')), 0,
       'hang: the refused POST is not in the log');
    $s->close;
    $N->stop;
    $P->stop;
}

# ---------------------------------------------------------------- broken servers
for my $mode (qw(garbage silent close_mid_reply)) {
    my $F = SSERedis::Fake->start(mode => $mode);
    my $N = start_node(url => $F->url, http => $http, ready => 0, server_extra => $extra);
    my @w0 = sort { $a <=> $b } $N->worker_pids;
    my $t_start = time();
    ok(wait_until(sub { $F->accepts >= 1 }, 5), "$mode: the node connected to the fake");
    ok(wait_redis($N, 'down', 10), "$mode: status \"down\"") or diag("$mode: " . redis_state($N));

    my $t0 = time();
    my $p = $N->http('GET', '/ping');
    is($p->{status} . ' ' . ($p->{body} // ''), "200 pong\n", "$mode: another location answers");
    ok(time() - $t0 < 1.5, sprintf("$mode: ... at once (%.2fs)", time() - $t0));
    $t0 = time();
    my $st = $N->http('GET', '/status');
    is($st->{status}, 200, "$mode: /status answers");
    ok(time() - $t0 < 1.5, sprintf("$mode: ... at once (%.2fs)", time() - $t0));

    my $s = $N->sse_connect('/events/local');
    is($s->status, 200, "$mode: a stream opens");
    ok($s->wait_for(qr/: heartbeat\n\n/, 3), "$mode: and gets heartbeats");
    $t0 = time();
    my $g = $N->http('GET', '/pub/local');
    is($g->{status} . ' ' . ($g->{json}{events} // '-') . ' ' . ($g->{json}{subscribers} // '-'), '200 0 1',
       "$mode: GET on the publish location answers from the zone (the stream's channel: 0 events, 1 subscriber)");
    is($N->http('GET', '/pub/nobody')->{status}, 404, "$mode: and 404 for a channel with neither");
    ok(time() - $t0 < 1.5, sprintf("$mode: ... at once (%.2fs)", time() - $t0));

    for my $i (1 .. 2) {
        $t0 = time();
        my $res = $N->publish('/pub/local', "to a broken redis $i");
        my $dt = time() - $t0;
        check_json_error($res, 503, "$mode: POST $i");
        is($res->{json}{error} // '', 'redis unavailable', "$mode: POST $i: \"redis unavailable\"");
        ok($dt < 3, sprintf("$mode: POST $i answered in %.2fs (sse_redis_timeout 1s + margin)", $dt));
    }

    # a few more seconds of reconnecting to it
    my $hb = scalar(my @c = $s->comments);
    $s->read_events(timeout => 3);
    ok(!$s->is_closed(0), "$mode: the stream stays open");
    ok(scalar(my @c2 = $s->comments) >= $hb + 2, "$mode: heartbeats go on");
    is(redis_state($N), 'down', "$mode: still \"down\"");
    is(join(',', sort { $a <=> $b } $N->worker_pids), join(',', @w0), "$mode: the same workers (none crashed)");
    # the whole log: a worker logs its first failure once, maybe while it starts
    my $since = $N->error_log;
    my @about = grep { /redis/i } log_lines($since, qw(warn error));
    ok(@about >= 1, "$mode: error.log says what is wrong with Redis") or diag($since);
    my @err = log_lines($since, qw(error crit alert emerg));
    ok(@err <= 10, "$mode: no log flood (" . @err . ' error lines in ' . sprintf('%.0f', time() - $t_start) . ' s)')
        or diag(join "\n", @err[0 .. ($#err > 15 ? 15 : $#err)]);
    my @cmds = $F->commands;
    splice @cmds, 10;
    diag("$mode: " . $F->accepts . " connections to the fake, first commands: @cmds");
    $s->close;
    $N->stop;
    $F->stop;
}

$r->stop;
done_testing;
