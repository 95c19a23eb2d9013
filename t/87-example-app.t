#!/usr/bin/perl
# conf-examples/app.conf: nginx in front of an app that also uses the hub.
# The app is a stand-in here (a small Perl HTTP server): GET / is its page,
# POST /api/messages publishes the body to the hub on the private port
# (http://127.0.0.1:<private>/publish/chat) and answers what the hub said.
# Through the public port: the page comes from the app, a subscriber of
# /events/chat gets what the app published, and POST /publish/chat reaches
# the app (404 there), not the hub.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/browser/lib";
use SSETest;
use Example;
use IO::Socket::INET;
use POSIX qw(_exit WNOHANG);

my $public = SSETest::_free_port();
my $private = SSETest::_free_port();
# --- the stand-in app
my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
                                   ReuseAddr => 1, Proto => 'tcp') or die "listen: $!";
my $app_port = $listen->sockport;
my $app = fork // die "fork: $!";
if (!$app) {
    my $hub = bless { port => $private, stopped => 1 }, 'SSETest::Server';
    local $SIG{ALRM} = sub { _exit(0) };
    alarm 120;
    while (my $c = $listen->accept) {
        # one request per connection is enough for nginx (keepalive: it
        # opens another when this one is closed)
        my $head = '';
        while (defined(my $l = <$c>)) { $head .= $l; last if $l =~ /^\r?\n$/ }
        my ($method, $path) = $head =~ /^(\S+) (\S+)/;
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        my $body = '';
        read($c, $body, $len) if $len;
        my ($status, $type, $out) = (404, 'text/plain', "not found\n");
        if (($method // '') eq 'GET' && $path eq '/') {
            ($status, $type, $out) = (200, 'text/html', "<!doctype html><title>the app</title>\n");
        } elsif (($method // '') eq 'POST' && $path eq '/api/messages') {
            my $r = SSETest::publish($hub, '/publish/chat', $body);
            ($status, $type, $out) = ($r->{status}, 'application/json', $r->{body});
        }
        print $c "HTTP/1.1 $status X\r\nContent-Type: $type\r\nContent-Length: " . length($out)
               . "\r\nConnection: close\r\n\r\n$out";
        close $c;
    }
    _exit(0);
}
close $listen;

my $ex = Example->new('app.conf', fill => {
    '127.0.0.1:8080' => "127.0.0.1:$public", '127.0.0.1:8081' => "127.0.0.1:$private",
    '127.0.0.1:3000' => "127.0.0.1:$app_port" });

my $t = $ex->config_test;
ok($t->{ok}, 'app.conf passes nginx -t') or diag($t->{output});
my $srv = $ex->start;        # the public port

my $page = $srv->http('GET', '/');
is($page->{status}, 200, 'GET / on the public port answers 200');
like($page->{body}, qr{<title>the app</title>}, 'with the app\'s page');

my $s = sse_connect($srv, '/events/chat');
is($s->status, 200, 'a browser subscribes to /events/chat on the public port');
my $r = $srv->http('POST', '/api/messages', body => 'hello from the app',
                   headers => { 'Content-Type' => 'text/plain' });
is($r->{status}, 201, 'POST /api/messages goes to the app, which publishes: 201') or diag($r->{body});
is($r->{json}{subscribers}, 1, 'the hub counted the subscriber');
my ($ev) = $s->read_events(count => 1, timeout => 10);
is($ev && $ev->{data}, 'hello from the app', 'the subscriber gets what the app published');
is($ev && $ev->{id}, $r->{json}{id}, 'with the id the hub gave');

my $outside = publish($srv, '/publish/chat', 'from outside');
is($outside->{status}, 404, 'POST /publish/chat on the public port reaches the app (404), not the hub');
my @more = $s->read_events(count => 1, timeout => 2);
is(scalar @more, 0, 'and nothing is published');
my $private_srv = $ex->client($private);
is($private_srv->http('GET', '/publish/chat')->{json}{events}, 1,
   'the private port shows one event kept');
$s->close;

$srv->stop;
kill 'TERM', $app;
waitpid($app, 0);
done_testing;
