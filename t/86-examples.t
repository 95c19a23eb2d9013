#!/usr/bin/perl
# The files of conf-examples/ as a user copies them: each passes nginx -t
# once its module path and ports are filled in, and those with a stream
# serve one: minimal.conf, publish-allow.conf (publishers by address),
# auth.conf (publishers through auth_request and through basic auth) and
# subscribe-cookie.conf (subscribers through auth_request on a cookie).
# The browser tests run demo.conf, http2.conf, cors.conf and
# subscribe-cookie.conf in Chromium (t/browser/), t/87-example-app.t runs
# app.conf.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/browser/lib";
use SSETest;
use Example;
use IO::Socket::INET;
use MIME::Base64 ();

my $p = SSETest::_free_port();
my $p2 = SSETest::_free_port();

# what the examples need filled in, besides the module path
my %fill = (
    'minimal.conf'          => { '127.0.0.1:8080' => "127.0.0.1:$p" },
    'publish-allow.conf'    => { 'listen  8080;' => "listen  127.0.0.1:$p;" },
    'auth.conf'             => sub { my ($d) = @_; htpasswd($d);
                                     { '127.0.0.1:8080' => "127.0.0.1:$p", '127.0.0.1:9000' => "127.0.0.1:$p2",
                                       '/etc/nginx/sse-publishers.htpasswd' => "$d/publishers.htpasswd" } },
    'subscribe-cookie.conf' => { '127.0.0.1:8080' => "127.0.0.1:$p", '127.0.0.1:3000' => "127.0.0.1:$p2" },
    'cors.conf'             => { '127.0.0.1:8080' => "127.0.0.1:$p", '127.0.0.1:8081' => "127.0.0.1:$p2" },
    'app.conf'              => { '127.0.0.1:8080' => "127.0.0.1:$p", '127.0.0.1:8081' => "127.0.0.1:$p2" },
    'http2.conf'            => sub { my ($d) = @_; cert($d);
                                     { 'listen  443 ssl' => "listen  127.0.0.1:$p ssl",
                                       '/etc/nginx/sse-localhost.crt' => "$d/cert.pem",
                                       '/etc/nginx/sse-localhost.key' => "$d/key.pem" } },
);

sub htpasswd {
    my ($d) = @_;
    my $hash = `openssl passwd -apr1 secret`;
    chomp $hash;
    open my $fh, '>', "$d/publishers.htpasswd" or die $!;
    print $fh "backend:$hash\n";
    close $fh;
    chmod 0644, "$d/publishers.htpasswd";
}
sub cert { make_certificate($_[0]) }

# --- every example passes nginx -t
for my $name (sort keys %fill) {
    my $ex = Example->new($name, fill => $fill{$name});
    my $t = $ex->config_test;
    ok($t->{ok}, "$name passes nginx -t") or diag($t->{output} . "--- conf ---\n" . $ex->conf);
    is_deeply([grep { !/^\Q127.0.0.1:\E/ } $ex->conf =~ /^\s*listen\s+(\S+)/mg], [],
              "$name: every listen is filled in with a loopback port");
}
{
    my $ex = Example->demo($p);
    my $t = $ex->config_test;
    ok($t->{ok}, 'demo.conf (as make run fills it) passes nginx -t') or diag($t->{output});
}

# a stream gets an event published on the same server
sub stream_works {
    my ($srv, $name, $pub_path, %o) = @_;
    my $s = sse_connect($srv, '/events/news', %{ $o{sub} || {} });
    is($s->status, 200, "$name: a stream opens");
    my $r = publish($srv, $pub_path, "hello $name", %{ $o{pub} || {} });
    is($r->{status}, 201, "$name: the publish answers 201") or diag($r->{body});
    my ($ev) = $s->read_events(count => 1, timeout => 10);
    is($ev && $ev->{data}, "hello $name", "$name: the stream gets the event");
    is($ev && $ev->{id}, $r->{json}{id}, "$name: with the id the publish answered");
    $s->close;
}

# one request from a source address of our choosing (127.0.0.2: not allowed)
sub from_addr {
    my ($port, $local, $method, $path, $body) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     LocalAddr => $local, Proto => 'tcp', Timeout => 5)
        or return 0;
    $body //= '';
    print $sock "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $line = <$sock> // '';
    close $sock;
    return $line =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0;
}

# --- minimal.conf
{
    my $srv = Example->new('minimal.conf', fill => $fill{'minimal.conf'})->start;
    stream_works($srv, 'minimal.conf', '/publish/news');
    $srv->stop;
}

# --- publish-allow.conf: 127.0.0.1 may publish, 127.0.0.2 may only subscribe
{
    my $srv = Example->new('publish-allow.conf', fill => $fill{'publish-allow.conf'})->start;
    stream_works($srv, 'publish-allow.conf', '/publish/news');
    is(from_addr($p, '127.0.0.2', 'POST', '/publish/news', 'intruder'), 403,
       'publish-allow.conf: a publish from 127.0.0.2 answers 403');
    is(from_addr($p, '127.0.0.2', 'HEAD', '/events/news'), 200,
       'publish-allow.conf: 127.0.0.2 may subscribe');
    my $g = $srv->http('GET', '/publish/news');
    is($g->{json}{events}, 1, 'publish-allow.conf: the refused publish stored nothing');
    $srv->stop;
}

# --- auth.conf: the app (a stand-in nginx here) checks a token; basic auth
{
    my $app = start_nginx(workers => 1, port => $p2, server => <<'EOS');
        location = /auth/publish {
            if ($http_authorization = "Bearer t0ken") { return 204; }
            return 401;
        }
EOS
    my $srv = Example->new('auth.conf', fill => $fill{'auth.conf'})->start;
    stream_works($srv, 'auth.conf (token)', '/publish/news',
                 pub => { headers => { Authorization => 'Bearer t0ken' } });
    is(publish($srv, '/publish/news', 'x')->{status}, 401, 'auth.conf: no token: 401');
    is(publish($srv, '/publish/news', 'x', headers => { Authorization => 'Bearer guess' })->{status},
       401, 'auth.conf: a wrong token: 401');
    my $basic = 'Basic ' . MIME::Base64::encode_base64('backend:secret', '');
    stream_works($srv, 'auth.conf (basic)', '/publish-basic/news',
                 pub => { headers => { Authorization => $basic } });
    is(publish($srv, '/publish-basic/news', 'x')->{status}, 401, 'auth.conf: basic, no password: 401');
    is(publish($srv, '/publish-basic/news', 'x',
               headers => { Authorization => 'Basic ' . MIME::Base64::encode_base64('backend:guess', '') })->{status},
       401, 'auth.conf: basic, a wrong password: 401');
    is($srv->http('GET', '/publish/news', headers => { Authorization => 'Bearer t0ken' })->{json}{events}, 2,
       'auth.conf: the refused publishes stored nothing');
    $srv->stop;
    $app->stop;
}

# --- subscribe-cookie.conf, as curl sees it (Chromium: t/browser/06)
{
    my $app = start_nginx(workers => 1, port => $p2, server => <<'EOS');
        location = /auth/session {
            if ($cookie_session = "s3cret") { return 204; }
            return 401;
        }
EOS
    my $srv = Example->new('subscribe-cookie.conf', fill => $fill{'subscribe-cookie.conf'})->start;
    stream_works($srv, 'subscribe-cookie.conf', '/publish/news',
                 sub => { headers => { Cookie => 'session=s3cret' } });
    is(sse_connect($srv, '/events/news')->status, 401, 'subscribe-cookie.conf: no cookie: 401');
    is(sse_connect($srv, '/events/news', headers => { Cookie => 'session=guess' })->status, 401,
       'subscribe-cookie.conf: a wrong cookie: 401');
    $srv->stop;
    $app->stop;
}

done_testing;

