#!/usr/bin/perl
# conf-examples/cors.conf in Chromium: the events come from one origin
# (127.0.0.1:<events>), the page from another (its second server,
# 127.0.0.1:<page>).  A page of an allowed origin subscribes, with
# withCredentials (the example's own page) and without; when its stream
# ends it reconnects cross-origin with Last-Event-ID and misses nothing.
# The same page from an origin the map does not list (http://localhost:<page>)
# is refused: its EventSource fires "error" and gets no event.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use SSETest;
use Browser;
use Example;
use Time::HiRes qw(sleep);

my @problems = Browser::problems();
ok(!@problems, 'Chromium, node and playwright-core are there') or do {
    diag($_) for @problems;
    done_testing;
    exit;
};

my $events = SSETest::_free_port();
my $pagep = SSETest::_free_port();
my $ex = Example->new('cors.conf', fill => {
    '127.0.0.1:8080' => "127.0.0.1:$events", '127.0.0.1:8081' => "127.0.0.1:$pagep" });
my $t = $ex->config_test;
ok($t->{ok}, 'cors.conf passes nginx -t') or diag($t->{output});
my $srv = $ex->start;

my $br = Browser->start;

# the channel's subscribers, as the publish location's GET answers them
sub subscribed {
    my ($n) = @_;
    return wait_until(sub {
        my $r = $srv->http('GET', '/publish/news');
        $r->{status} == 200 && $r->{json}{subscribers} == $n;
    }, 20);
}

# the example's page shows each event's data, and "(error)" on an error
my $body = q{document.body.innerText.split('\n').filter(Boolean)};
my $track = <<'JS';
    window.got = [];
    window.errors = 0;
    const es = new EventSource(document.querySelector('script') ? 'EVENTS' : '');
    es.onmessage = (e) => got.push([e.lastEventId, e.data]);
    es.onerror = () => { errors++; };
    window.es2 = es;
    true
JS
$track =~ s{EVENTS}{http://127.0.0.1:$events/events/news};

# --- an allowed origin
my $origin = "http://127.0.0.1:$pagep";
is($br->goto("$origin/"), 200, "the page loads from $origin");
$br->eval($track);
ok(subscribed(2), 'both EventSources (with and without credentials) are subscribed');
my @ids;
for my $d ('one', 'two') {
    my $r = publish($srv, '/publish/news', $d);
    push @ids, $r->{json}{id};
}
ok($br->wait("window.got.length >= 2 && $body.length >= 2", 20), 'the events arrive cross-origin');
is_deeply($br->eval($body), ['one', 'two'], 'the page (withCredentials) shows them');
is_deeply($br->eval('window.got'), [[$ids[0], 'one'], [$ids[1], 'two']], 'the plain EventSource got them');
my @streams = grep { $_->{url} =~ m{/events/news$} } $br->responses;
is(scalar @streams, 2, 'two stream responses');
is_deeply([map { $_->{headers}{'access-control-allow-origin'} } @streams], [$origin, $origin],
          "Access-Control-Allow-Origin: $origin on both");

# the stream ends (DELETE ends the channel's streams); the browser
# reconnects cross-origin with Last-Event-ID and gets what it missed
my $d = $srv->http('DELETE', '/publish/news');
is($d->{status}, 200, 'DELETE ends the streams');
is($d->{json}{subscribers}, 2, 'both of them');
my $missed = publish($srv, '/publish/news', 'while away');
ok(subscribed(2), 'both reconnected');
my $after = publish($srv, '/publish/news', 'after');
ok($br->wait("window.got.length >= 4", 20), 'the plain EventSource got two more events');
is_deeply($br->eval('window.got.slice(2)'),
          [[$missed->{json}{id}, 'while away'], [$after->{json}{id}, 'after']],
          'the one published while it was away, then the live one');
ok($br->wait("$body.includes('after')", 20), 'the withCredentials one too');
is_deeply($br->eval("$body.filter((l) => l !== '(error)')"), ['one', 'two', 'while away', 'after'],
          'the page shows the four events once, in order');
is($br->eval('window.errors'), 1, 'one error event (the stream that ended)');

# --- an origin the map does not list: the same page from http://localhost
my $other = "http://localhost:$pagep";
my $before = () = $br->responses;
my $log_before = () = $br->log_lines;
is($br->goto("$other/"), 200, "the page loads from $other");
$br->eval($track);
ok($br->wait("window.errors >= 1 && $body.includes('(error)')", 20),
   'both EventSources fire "error"');
publish($srv, '/publish/news', 'not for you');
sleep 3;
is_deeply($br->eval('window.got'), [], 'the plain EventSource got no event');
is_deeply($br->eval($body), ['(error)'], 'the page shows no event');
is($br->eval('window.es2.readyState'), 2, 'the browser closed the stream (readyState CLOSED)');
# the browser refused the answer: no response reached the page's code
my @all = $br->responses;
is(scalar(grep { $_->{url} =~ m{/events/news$} } @all[$before .. $#all]), 0,
   'no stream response reached the refused page');
my @log = $br->log_lines;
ok(scalar(grep { m{^request failed: http://127\.0\.0\.1:$events/events/news } } @log[$log_before .. $#log]) >= 2,
   'Chromium failed both stream requests (CORS)');
# what nginx answers each origin (a request with an Origin header, as the browser sends)
for my $o ([$origin, $origin], [$other, undef]) {
    my $s = sse_connect($srv, '/events/news', headers => { Origin => $o->[0] });
    is($s->status, 200, "nginx answers the stream for Origin: $o->[0]");
    is($s->header('access-control-allow-origin'), $o->[1],
       "with Access-Control-Allow-Origin: " . ($o->[1] // 'none'));
    $s->close;
}

$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
done_testing;
