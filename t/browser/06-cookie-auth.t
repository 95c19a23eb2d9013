#!/usr/bin/perl
# conf-examples/subscribe-cookie.conf in Chromium: a stream behind
# auth_request and a session cookie.  The app is a stand-in here (a second
# nginx: /auth/session answers 204 for the right $cookie_session and 401
# otherwise, /login sets the cookie, /logout clears it).  Without the cookie,
# or with a wrong one, the stream answers 401, the EventSource fires "error"
# and closes, and no event arrives; after /login the same page's new
# EventSource receives the events; after /logout it is refused again.
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

my $app = start_nginx(workers => 1, server => <<'EOS');
        location = /auth/session {
            if ($cookie_session = "s3cret") { return 204; }
            return 401;
        }
        location = /login {
            add_header Set-Cookie "session=s3cret; Path=/; HttpOnly; SameSite=Lax" always;
            return 204;
        }
        location = /logout {
            add_header Set-Cookie "session=; Path=/; Max-Age=0" always;
            return 204;
        }
        location / { default_type text/html; return 200 "<!doctype html><title>app</title>"; }
EOS

my $port = SSETest::_free_port();
my $ex = Example->new('subscribe-cookie.conf', fill => {
    '127.0.0.1:8080' => "127.0.0.1:$port", '127.0.0.1:3000' => '127.0.0.1:' . $app->port });
my $t = $ex->config_test;
ok($t->{ok}, 'subscribe-cookie.conf passes nginx -t') or diag($t->{output});
my $srv = $ex->start;

my $br = Browser->start;
is($br->goto("http://127.0.0.1:$port/"), 200, "the app's page loads through nginx");

# a new EventSource on /events/private, recorded in window.s<k>
my $k = 0;
sub subscribe {
    $k++;
    $br->eval(<<"JS");
        window.s$k = { got: [], errors: 0, opened: false };
        window.es$k = new EventSource('/events/private');
        es$k.onopen = () => { s$k.opened = true; };
        es$k.onmessage = (e) => s$k.got.push(e.data);
        es$k.onerror = () => { s$k.errors++; };
        true
JS
    return $k;
}
my $nresp = 0;
# the statuses of the stream requests since the last call
sub stream_statuses {
    my @r = $br->responses;
    my @mine = map { $_->{status} } grep { $_->{url} =~ m{/events/private$} } @r[$nresp .. $#r];
    $nresp = @r;
    return \@mine;
}

sub refused {
    my ($name) = @_;
    my $i = subscribe();
    ok($br->wait("s$i.errors >= 1 && es$i.readyState === 2", 20),
       "$name: the EventSource fires error and closes");
    publish($srv, '/publish/private', "not for $name");
    sleep 2;
    is_deeply($br->eval("s$i.got"), [], "$name: no event arrives");
    is($br->eval("s$i.opened"), JSONBool::FALSE(), "$name: it never opened");
    is_deeply(stream_statuses(), [401], "$name: the stream answered 401");
}

refused('no cookie');

$br->eval(q{document.cookie = 'session=guess; path=/'; true});
refused('a wrong cookie');

is($br->eval(q{fetch('/login').then((r) => r.status)}), 204, 'the page logs in (the app sets the cookie)');
my $i = subscribe();
ok($br->wait("s$i.opened", 20), 'with the cookie the stream opens');
is_deeply(stream_statuses(), [200], 'it answered 200');
my $r = publish($srv, '/publish/private', 'for members');
is($r->{json}{subscribers}, 1, 'nginx counts one subscriber');
ok($br->wait("s$i.got.length >= 1", 20), 'the event arrives');
is_deeply($br->eval("s$i.got"), ['for members'], 'that event');
$br->eval("es$i.close(); true");

is($br->eval(q{fetch('/logout').then((r) => r.status)}), 204, 'the page logs out (the cookie is cleared)');
refused('after logout');

$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
$app->stop;
done_testing;
