#!/usr/bin/perl
# conf-examples/http2.conf (HTTP/2 over TLS, gzip on for event streams) in
# Chromium: one page opens eight EventSource streams, more than the six
# connections a browser opens to one host over HTTP/1.1; over HTTP/2 all of
# them open, come gzip-compressed, and each receives each event before the
# next one is published.  The certificate is self-signed, made here with
# openssl; Chromium runs with --ignore-certificate-errors.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use SSETest;
use Browser;
use Example;

my @problems = Browser::problems();
ok(!@problems, 'Chromium, node and playwright-core are there') or do {
    diag($_) for @problems;
    done_testing;
    exit;
};
my $N = 8;

my $port = SSETest::_free_port();
my $ex = Example->new('http2.conf', fill => sub {
    my ($dir) = @_;
    make_certificate($dir);
    # the page: nginx's default root, html/ under the prefix
    mkdir "$dir/html";
    open my $fh, '>', "$dir/html/index.html" or die $!;
    print $fh "<!doctype html><title>h2</title>\n";
    close $fh;
    chmod 0755, "$dir/html";
    chmod 0644, "$dir/html/index.html";
    return { 'listen  443 ssl' => "listen  127.0.0.1:$port ssl",
             '/etc/nginx/sse-localhost.crt' => "$dir/cert.pem",
             '/etc/nginx/sse-localhost.key' => "$dir/key.pem" };
});
my $t = $ex->config_test;
ok($t->{ok}, 'http2.conf passes nginx -t') or diag($t->{output});
my $srv = $ex->start;

my $br = Browser->start(args => ['--ignore-certificate-errors']);
is($br->goto("https://127.0.0.1:$port/"), 200, 'the page loads over HTTPS');
is($br->eval(q{performance.getEntriesByType('navigation')[0].nextHopProtocol}), 'h2',
   'over HTTP/2');

$br->eval(<<"JS");
    window.streams = [];
    for (let i = 0; i < $N; i++) {
        const es = new EventSource('/events/news');
        const s = { open: false, got: [] };
        es.onopen = () => { s.open = true; };
        es.onmessage = (e) => s.got.push(e.data);
        streams.push(s);
    }
    window.publish = (data) => fetch('/publish/news', { method: 'POST', body: data })
        .then((r) => r.status);
    true
JS
my $opened = $br->wait("streams.filter((s) => s.open).length === $N && $N", 30);
is($opened, $N, "all $N EventSource streams opened")
    or diag('open: ' . $br->eval('streams.filter((s) => s.open).length'));
is($br->eval(q{fetch('/status').then((r) => r.json()).then((j) => j.subscribers)}), $N,
   "nginx's status counts $N subscribers");

for my $k (1 .. 3) {
    is($br->eval("publish('event $k')"), 201, "the page publishes event $k");
    ok($br->wait("streams.every((s) => s.got.length >= $k)", 15),
       "each of the $N streams received event $k before the next one is published")
        or diag(json_encode($br->eval('streams.map((s) => s.got.length)')));
}
is_deeply($br->eval('streams.map((s) => s.got)'),
          [map { ['event 1', 'event 2', 'event 3'] } 1 .. $N],
          'each stream got the three events, once, in order');

my @streams = grep { $_->{url} =~ m{/events/news$} } $br->responses;
is(scalar @streams, $N, "$N stream responses");
is_deeply([map { $_->{headers}{'content-encoding'} // 'none' } @streams], [map { 'gzip' } 1 .. $N],
          'every stream is gzip-compressed (gzip on, gzip_types text/event-stream)');

$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
done_testing;
