#!/usr/bin/perl
# Directive parsing: good configurations pass nginx -t, bad ones fail it
# with an [emerg] naming the problem (never a crash).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $full_http = <<'EOH';
    sse_zone hub:16m;
    sse_history 50;
    sse_history_ttl 10m;
    sse_retry 2s;
    sse_heartbeat 15s;
    sse_max_pending 128k;
    sse_max_subscribers 100;
    sse_max_message_size 32k;
EOH
my $full_server = <<'EOS';
        sse_history 20;
        sse_retry off;
        sse_heartbeat off;
        location ~ ^/events/(.+)$ {
            sse_stream $1;
            sse_history_ttl 30s;
            sse_max_pending 1m;
            sse_max_subscribers 0;
        }
        location /multi { sse_stream "a,b,$arg_c"; }
        location /cookie { sse_stream $cookie_ch; }
        location ~ ^/pub/(.+)$ {
            allow 127.0.0.1;
            deny all;
            sse_publish $1;
            sse_max_message_size 1m;
        }
        location = /pub-fixed { sse_publish news,sports; }
        location = /status { sse_status; }
EOS

{
    my $r = nginx_config_test(http => $full_http, server => $full_server);
    ok($r->{ok}, 'every directive in its contexts: nginx -t passes') or diag($r->{output});
}
{
    my $r = nginx_config_test();
    ok($r->{ok}, 'the default test config passes') or diag($r->{output});
}

my @bad = (
    ['sse_retry abc',             http => "sse_retry abc;\n"],
    ['sse_retry with two values', http => "sse_retry 1s 2s;\n"],
    ['sse_heartbeat xyz',         http => "sse_heartbeat xyz;\n"],
    ['sse_history -1',            http => "sse_history -1;\n"],
    ['sse_history abc',           http => "sse_history abc;\n"],
    ['sse_history_ttl abc',       http => "sse_history_ttl abc;\n"],
    ['sse_max_pending abc',       http => "sse_max_pending abc;\n"],
    ['sse_max_subscribers x',     http => "sse_max_subscribers x;\n"],
    ['sse_max_message_size abc',  http => "sse_max_message_size abc;\n"],
    ['sse_zone without size',     http => "sse_zone hub;\n"],
    ['sse_zone bad size',         http => "sse_zone hub:abc;\n"],
    ['sse_zone in a server',      server => "sse_zone hub:1m;\n location = /s { sse_status; }\n"],
    ['sse_stream without channels', server => "location /e { sse_stream; }\n"],
    ['sse_publish without channels', server => "location /p { sse_publish; }\n"],
    ['sse_stream in server context', server => "sse_stream abc;\n"],
    ['sse_status with an argument', server => "location /s { sse_status foo; }\n"],
    ['unknown sse_ directive',    http => "sse_nonsense 1;\n"],
    ['sse_stream and sse_status in one location',
        server => "location /x { sse_stream a; sse_status; }\n", like => qr/conflicts/],
    ['sse_status and sse_publish in one location',
        server => "location /x { sse_status; sse_publish a; }\n", like => qr/conflicts/],
    ['sse_stream and sse_publish in one location',
        server => "location /x { sse_stream a; sse_publish a; }\n", like => qr/conflicts/],
    ['sse_status twice', server => "location /x { sse_status; sse_status; }\n",
        like => qr/duplicate/],
);
for my $c (@bad) {
    my ($name, %o) = @$c;
    my $want = delete $o{like};
    my $r = nginx_config_test(%o);
    ok(!$r->{ok}, "$name: nginx -t fails");
    like($r->{output}, qr/\[emerg\]/, "$name: with an [emerg] message");
    like($r->{output}, $want, "$name: it says why") if $want;
    unlike($r->{output}, qr/signal|segmentation|core dumped/i, "$name: no crash");
}

# static channel values that can never be valid: refused by nginx -t, or
# (SPEC.md: "a 400 for that request") refused with 400 on every request
for my $c (['a static bad channel name', 'bad!name'],
           ['17 static channels', join(',', map { "c$_" } 1 .. 17)]) {
    my ($name, $value) = @$c;
    my %o = (server => "location /e { sse_stream $value; }\nlocation /p { sse_publish $value; }\n");
    my $r = nginx_config_test(%o);
    if (!$r->{ok}) {
        like($r->{output}, qr/\[emerg\]/, "$name: nginx -t refuses it with an [emerg]");
        next;
    }
    my $srv = start_nginx(%o, workers => 1);
    check_json_error($srv->http('GET', '/e'), 400, "$name: stream request");
    check_json_error($srv->publish('/p', 'x'), 400, "$name: publish request");
    $srv->stop;
}

# a running server with the full configuration answers
{
    my $srv = start_nginx(http => $full_http, server => $full_server, workers => 1);
    my $s = $srv->sse_connect('/events/x');
    is($s->status, 200, 'full config: stream opens');
    $s->read_events(timeout => 0.3);
    is($s->raw, '', 'full config: sse_retry off from the server level applies');
    my $r = $srv->publish('/pub-fixed', 'fixed');
    is($r->{status}, 201, 'full config: fixed two-channel publish');
    is(ref $r->{json}, 'ARRAY', 'full config: answer is an array');
    my $m = $srv->sse_connect('/multi?c=news');
    is($m->status, 200, 'full config: list with a variable opens');
    my $c = $srv->sse_connect('/cookie', headers => { Cookie => 'ch=sports' });
    is($c->status, 200, 'full config: $cookie_ch');
    $r = $srv->publish('/pub-fixed', 'again');
    my @ev = $m->read_events(count => 1, timeout => 3);
    is($ev[0]{data} // '', 'again', 'full config: "a,b,$arg_c" stream got the news event');
    @ev = $c->read_events(count => 1, timeout => 3);
    is($ev[0]{data} // '', 'again', 'full config: cookie stream got the sports event');
    my $st = $srv->status;
    is($st->{zone_bytes_total}, 16 * 1024 * 1024, 'full config: sse_zone hub:16m used');
    my $empty = $srv->http('GET', '/cookie');
    check_json_error($empty, 400, 'sse_stream variable evaluating to an empty string');
    $_->close for $s, $m, $c;
    $srv->stop;
}

done_testing;
