#!/usr/bin/perl
# Hostile input on the status location, over HTTP/1.1 and HTTP/2: garbage
# ?format= values (JSON, the default), every method (405 with Allow, JSON),
# a crowd of status requests at once, and Accept: text/event-stream, which
# SPEC.md "Status" answers with a stream of one "stats" event a second.
# nginx keeps serving with the workers it started with.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSEHostile;
use IPC::Open2;
use IO::Select;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

# ---- the helpers are in t/lib/SSEHostile.pm

# ---- the server

my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers => 2,
    http => "sse_heartbeat off;\n",
    server_extra => "        listen 127.0.0.1:$h2port http2;\n",
);
my @workers = $srv->worker_pids;
is(scalar @workers, 2, 'two workers');

ok(system("$NODE --version >/dev/null 2>&1") == 0, "node is installed ($NODE)")
    or BAIL_OUT('install nodejs (make deps)');
my $h2 = h2_client();
ok(h2($h2, op => 'connect', session => 'a', port => $h2port)->{ok}, 'HTTP/2 (h2c) session');

my @KEYS = qw(subscribers channels events_published events_delivered slow_closed
              history_evicted zone_bytes_used zone_bytes_total redis);

# '' when $r is the status JSON (one line, every key), else what is wrong
sub status_json_problem {
    my ($r) = @_;
    return "status $r->{status}" unless ($r->{status} // 0) == 200;
    my $ct = $r->{headers}{'content-type'} // '';
    return "Content-Type '$ct'" unless $ct =~ m{^application/json}i;
    my $b = $r->{body} // '';
    my $j = eval { json_decode($b) };
    return 'body ' . SSETest::_show($b) unless $b =~ /\A\{[^\r\n]*\}\r?\n?\z/ && ref $j eq 'HASH';
    my @missing = grep { !defined $j->{$_} } @KEYS;
    return "no @missing" if @missing;
    return '';
}

# a little traffic, so the numbers are not all zero
my $sub = $srv->sse_connect('/events/st');
$srv->publish('/pub/st', "e$_") for 1 .. 3;
$sub->read_events(count => 3, timeout => 5);

# ======================================================================
# ?format=

{
    my @garbage = ('format=', 'format', 'format=json', 'format=PROMETHEUS', 'format=Prometheus',
        'format=prometheusx', 'format=prom', 'format=prometheus%00', 'format=%00prometheus',
        'format=prometheus%20', 'format=%', 'format=%zz', 'format=%FF%FE', "format=\xff\xfe",
        'format=json,prometheus', 'format[]=prometheus', 'xformat=prometheus',
        'format=' . ('p' x 4000), 'format=' . ('%41' x 2000), '&&&=&&format=', '=prometheus',
        'format==prometheus', 'format=text/plain');
    my @p;
    for my $q (@garbage) {
        my $show = length $q > 40 ? substr($q, 0, 20) . '...(' . length($q) . ' bytes)' : SSETest::_show($q);
        push @p, ["?$show", status_json_problem($srv->http('GET', "/status?$q"))];
    }
    for my $q ('format=', 'format=PROMETHEUS', 'format=prometheus%00', 'format=' . ('x' x 2000)) {
        push @p, ["HTTP/2 ?" . substr($q, 0, 30), status_json_problem(h2($h2, op => 'request', session => 'a', path => "/status?$q"))];
    }
    all_ok('garbage ?format=: 200 with the JSON (the default)', @p);

    # control: prometheus is understood, so the cases above can fail
    my $r = $srv->http('GET', '/status?format=prometheus');
    is($r->{status}, 200, '?format=prometheus: 200');
    is($r->{headers}{'content-type'}, 'text/plain; version=0.0.4', '?format=prometheus: text/plain; version=0.0.4');
    my @metrics = $r->{body} =~ /^(nginx_sse_\w+) /mg;
    ok(@metrics >= 9, '?format=prometheus: nginx_sse_ metrics (' . scalar(@metrics) . ')');
    my @no_help = grep { my $m = $_; $r->{body} !~ /^# HELP \Q$m\E \S/m } @metrics;
    my @no_type = grep { my $m = $_; $r->{body} !~ /^# TYPE \Q$m\E (counter|gauge)$/m } @metrics;
    is("@no_type", '', '?format=prometheus: every metric has a # TYPE line');
    is("@no_help", '', '?format=prometheus: every metric has a # HELP line');
}
still_serving($srv, 'the ?format= cases');

# ======================================================================
# methods

{
    my (@m, @allow, @js);
    for my $m (qw(POST PUT DELETE PATCH OPTIONS PROPFIND FROBNICATE)) {
        my $r = $srv->http($m, '/status', ($m =~ /^(POST|PUT|PATCH)$/ ? (body => 'x') : ()));
        push @m, [$m, $r->{status} == 405 ? '' : "status $r->{status}"];
        push @allow, [$m, ($r->{headers}{allow} // '') eq 'GET, HEAD' ? '' : "Allow '" . ($r->{headers}{allow} // '') . "'"];
        push @js, [$m, json_error_problem($r, 405)];
        my $h = h2($h2, op => 'request', session => 'a', method => $m, path => '/status');
        push @m, ["HTTP/2 $m", ($h->{status} // 0) == 405 ? '' : "status $h->{status}"];
        push @allow, ["HTTP/2 $m", ($h->{headers}{allow} // '') eq 'GET, HEAD' ? '' : "Allow '" . ($h->{headers}{allow} // '') . "'"];
        push @js, ["HTTP/2 $m", json_error_problem($h, 405)];
    }
    all_ok('other methods on the status location: 405', @m);
    all_ok('other methods on the status location: Allow: GET, HEAD', @allow);
    all_ok('other methods on the status location: one-line JSON error', @js);
    # TRACE and CONNECT are refused by nginx itself before any location
    # runs (its own page: README, "Behaviour where the spec is silent")
    for my $m (qw(TRACE CONNECT)) {
        my $r = $srv->http($m, '/status');
        is($r->{status}, 405, "$m on the status location: 405 from nginx");
    }
    my $h = $srv->http('HEAD', '/status');
    is($h->{status}, 200, 'HEAD on the status location: 200');
    like($h->{headers}{'content-type'} // '', qr{^application/json}, 'HEAD on the status location: JSON headers');
    is($h->{body}, '', 'HEAD on the status location: no body');
}
still_serving($srv, 'the method cases');

# ======================================================================
# a crowd of status requests at once, while events are published

{
    my @r = $srv->http_parallel(200, 'GET', '/status', timeout => 20);
    my $i = 0;
    all_ok('200 status requests at once: each one JSON answer', map { ['request ' . $i++, status_json_problem($_)] } @r);
}
still_serving($srv, 'the crowd of status requests');

# ======================================================================
# Accept: text/event-stream: a stream of "stats" events, one a second

sub stats_problem {
    my ($ev) = @_;
    return 'no event' unless $ev;
    return "event type '$ev->{event}'" unless $ev->{event} eq 'stats';
    my $j = eval { json_decode($ev->{data}) };
    return 'data ' . SSETest::_show($ev->{data}) unless ref $j eq 'HASH' && $ev->{data} !~ /\n/;
    my @missing = grep { !defined $j->{$_} } @KEYS, qw(deliveries_per_s publishes_per_s);
    return "no @missing" if @missing;
    return '';
}

{
    my $s = $srv->sse_connect('/status', headers => { Accept => 'text/event-stream' });
    is($s->status, 200, 'status with Accept: text/event-stream: 200');
    ok(($s->header('content-type') // '') =~ m{^text/event-stream} && !defined $s->header('content-length')
       && ($s->header('cache-control') // '') eq 'no-cache',
       '... a stream: text/event-stream, no Content-Length, Cache-Control: no-cache')
        or diag('Content-Type: ' . ($s->header('content-type') // '') . ', Content-Length: '
                . ($s->header('content-length') // 'none'));
    my @ev = $s->read_events(count => 1, timeout => 3);
    my $t1 = time();
    is(stats_problem($ev[0]), '', '... a "stats" event: one line of the status JSON plus deliveries_per_s and publishes_per_s');
    # events published now show in the next seconds' events
    my $before = $ev[0] ? eval { json_decode($ev[0]{data}) } : undef;
    $srv->publish('/pub/st', "p$_") for 1 .. 5;
    $sub->read_events(count => 5, timeout => 5);
    my @next = $s->read_events(count => 2, timeout => 4);
    my $t3 = time();
    is(join(' / ', map { stats_problem($next[$_]) } 0, 1), ' / ', '... two more "stats" events follow, each as the first');
    ok(@next == 2 && $t3 - $t1 > 1.0 && $t3 - $t1 < 3.8, '... about one a second')
        or diag(sprintf '%d more events in %.2fs', scalar @next, $t3 - $t1);
    my @after = map { eval { json_decode($_->{data}) } || {} } @next;
    ok($before && @after && $after[-1]{events_published} >= ($before->{events_published} // 1e9) + 5
       && grep({ ($_->{publishes_per_s} // 0) > 0 } @after),
       '... the counters move with the hub: 5 more published, publishes_per_s > 0');
    ok(!$s->is_closed(0), '... and the stream stays open');
    $s->close;

    my $r = h2($h2, op => 'open', session => 'a', sid => 'stats', path => '/status',
               headers => { accept => 'text/event-stream' });
    is($r->{status}, 200, 'HTTP/2 status with Accept: text/event-stream: 200');
    like($r->{headers}{'content-type'} // '', qr{^text/event-stream}, 'HTTP/2: a text/event-stream answer');
    my $d = h2($h2, op => 'read', sid => 'stats', until_b64 => encode_base64("event: stats\n", ''), timeout => 3000);
    like($d->{data} // '', qr/^event: stats\ndata: \{.*"publishes_per_s"/m, 'HTTP/2: "stats" events');
    h2($h2, op => 'reset', sid => 'stats');
}
still_serving($srv, 'the status streams');

$sub->close;
is(h2($h2, op => 'session_state', session => 'a')->{closed}, JSONBool::FALSE(),
   'the HTTP/2 session survived all of it');
h2_end($h2);
is_deeply([$srv->worker_pids], \@workers, 'the same workers as at the start (none crashed)');
$srv->stop;
done_testing;
