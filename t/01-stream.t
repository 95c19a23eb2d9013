#!/usr/bin/perl
# The subscriber stream: headers, first bytes, sse_retry, HTTP/1.0, HEAD,
# gzip in the same server.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 2,
    server_extra => <<'EOS',
        location ~ ^/noretry/(.+)$ { sse_stream $1; sse_retry off; }
        location ~ ^/retry15/(.+)$ { sse_stream $1; sse_retry 1500ms; }
        location ~ ^/retry1m/(.+)$ { sse_stream $1; sse_retry 1m; }
        location ~ ^/retry0/(.+)$ { sse_stream $1; sse_retry 0; }
EOS
);

sub check_stream_headers {
    my ($s, $name) = @_;
    is($s->status, 200, "$name: 200");
    is($s->header('content-type'), 'text/event-stream; charset=utf-8',
       "$name: Content-Type");
    is($s->header('cache-control'), 'no-cache', "$name: Cache-Control");
    is($s->header('x-accel-buffering'), 'no', "$name: X-Accel-Buffering");
    ok(!defined $s->header('content-length'), "$name: no Content-Length");
}

# --- headers first, then "retry: 3000\n\n", then nothing until a publish
{
    my $t0 = time();
    my $s = $srv->sse_connect('/events/s1');
    ok($s->{head_done}, 'response head arrives without any event published')
        or diag($s->{error} // '');
    ok(time() - $t0 < 2, 'head arrives at once');
    check_stream_headers($s, 'default stream');
    is(lc($s->header('transfer-encoding') // ''), 'chunked',
       'HTTP/1.1 stream is chunked');
    ok($s->wait_bytes(length "retry: 3000\n\n", 2), 'first bytes arrive');
    my @ev = $s->read_events(timeout => 0.5);
    is($s->take_raw, "retry: 3000\n\n", 'first body bytes are exactly "retry: 3000\n\n"');
    is(scalar @ev, 0, 'no event before a publish');
    is($s->retry, '3000', 'parser saw retry 3000');

    my $t1 = time();
    my $r = $srv->publish('/pub/s1', 'hello');
    is($r->{status}, 201, 'publish 201');
    my $id = $r->{json}{id};
    ok($s->wait_new(qr/\n\n\z/, 2), 'event arrives');
    my $lat = time() - $t1;
    ok($lat < 1, sprintf('event delivered promptly (%.3fs)', $lat));
    is($s->take_raw, "id: $id\ndata: hello\n\n", 'exact bytes of the event');
    @ev = $s->read_events(count => 1, timeout => 1);
    is($ev[0]{data}, 'hello', 'parsed data');
    is($ev[0]{id}, $id, 'parsed id');
    is($ev[0]{event}, 'message', 'type message');
    $s->close;
}

# --- sse_retry off: headers still leave at once, no body bytes at all
{
    my $t0 = time();
    my $s = $srv->sse_connect('/noretry/s2');
    ok($s->{head_done} && time() - $t0 < 2,
       'sse_retry off: head arrives at once with no body bytes to push it')
        or diag($s->{error} // '');
    check_stream_headers($s, 'sse_retry off');
    $s->read_events(timeout => 0.7);
    is($s->raw, '', 'sse_retry off: no retry line, no bytes');
    my $r = $srv->publish('/pub/s2', 'x');
    ok($s->wait_new(qr/\n\n\z/, 2), 'sse_retry off: event arrives');
    is($s->take_raw, "id: $r->{json}{id}\ndata: x\n\n", 'sse_retry off: the event is the first body bytes');
    $s->close;
}

# --- custom sse_retry values
# (0 is sent: it asks the browser to reconnect at once; "off" sends nothing)
for my $c (['/retry15/s3', 1500], ['/retry1m/s3', 60000], ['/retry0/s3', 0]) {
    my ($path, $ms) = @$c;
    my $s = $srv->sse_connect($path);
    is($s->status, 200, "$path: 200");
    $s->wait_bytes(length "retry: $ms\n\n", 2);
    $s->read_events(timeout => 0.3);
    is($s->raw, "retry: $ms\n\n", "$path: retry: $ms");
    $s->close;
}

# --- HTTP/1.0 client: no chunking, stream still works
{
    my $s = $srv->sse_connect('/events/s4', http10 => 1);
    check_stream_headers($s, 'HTTP/1.0');
    ok(!defined $s->header('transfer-encoding'), 'HTTP/1.0: no Transfer-Encoding');
    $s->wait_bytes(13, 2);
    is($s->take_raw, "retry: 3000\n\n", 'HTTP/1.0: retry line');
    my $r = $srv->publish('/pub/s4', "a\nb");
    ok($s->wait_new(qr/\n\n\z/, 2), 'HTTP/1.0: event arrives');
    is($s->take_raw, "id: $r->{json}{id}\ndata: a\ndata: b\n\n", 'HTTP/1.0: exact bytes');
    ok(!$s->is_closed(0.2), 'HTTP/1.0: stream stays open');
    $s->close;
}

# --- HEAD: stream headers, no body, nothing subscribed
{
    ok($srv->wait_stat(subscribers => 0, 3), 'earlier streams are gone');
    my $before = $srv->status;
    my $s = $srv->sse_connect('/events/s5', method => 'HEAD');
    check_stream_headers($s, 'HEAD');
    my $r = $srv->http('HEAD', '/events/s5');
    is($r->{status}, 200, 'HEAD via http(): 200');
    is($r->{headers}{'content-type'}, 'text/event-stream; charset=utf-8', 'HEAD: content type');
    is($r->{body}, '', 'HEAD: no body');
    sleep 0.3;
    $s->_pump(0.2);
    is($s->{extra} // '', '', 'HEAD: no body bytes on the kept-alive connection');
    my $after = $srv->status;
    is($after->{subscribers}, 0, 'HEAD: no subscriber counted');
    is($after->{channels}, $before->{channels}, 'HEAD: no channel counted');
    is($srv->http('GET', '/pub/s5')->{status}, 404, 'HEAD: channel not created');
    $s->close;
}

# --- several streams at once each get the event, and the status sees them
{
    my @s = map { $srv->sse_connect('/events/s6') } 1 .. 5;
    is(scalar(grep { $_->status == 200 } @s), 5, 'five streams open');
    my $st = $srv->status;
    is($st->{subscribers}, 5, 'status counts 5 subscribers');
    my $r = $srv->publish('/pub/s6', 'all');
    is($r->{json}{subscribers}, 5, 'publish answer counts 5 subscribers');
    for my $i (0 .. 4) {
        my @ev = $s[$i]->read_events(count => 1, timeout => 2);
        is($ev[0]{data} // '', 'all', "stream $i got the event");
    }
    $_->close for @s;
}

$srv->stop;

# --- gzip on in the same server: events are not held back
{
    my $g = start_nginx(
        workers => 1,
        http => "gzip on; gzip_types text/event-stream; gzip_min_length 1;\n",
    );
    my $s = $g->sse_connect('/events/gz', headers => { 'Accept-Encoding' => 'gzip' });
    is($s->status, 200, 'gzip: 200');
    is($s->header('content-encoding'), 'gzip', 'gzip: the stream is gzipped');
    ok($s->wait_for(qr/retry: 3000\n\n/, 2), 'gzip: retry line arrives without waiting');
    for my $n (1 .. 3) {
        my $t = time();
        my $r = $g->publish('/pub/gz', "zipped $n");
        my @ev = $s->read_events(count => 1, timeout => 2);
        is($ev[0]{data} // '', "zipped $n", "gzip: event $n arrives");
        is($ev[0]{id} // '', $r->{json}{id}, "gzip: event $n id");
        ok(time() - $t < 1.5, "gzip: event $n not held in a buffer");
    }
    $s->close;
    $g->stop;
}

done_testing;
