#!/usr/bin/perl
# Hostile input on the publish location, over HTTP/1.1 and HTTP/2: channel
# names with every forbidden byte, event types of every wrong kind, NUL
# bytes, invalid UTF-8 of every kind, odd text/event-stream bodies, 10,000
# events in one body, the size limits (sse_max_message_size and
# client_max_body_size, with Content-Length and chunked, and how much nginx
# reads before it answers), every method.  Each gets its SPEC.md answer
# (400/405/413 with a one-line JSON {"error":...}, or 201 and delivered
# byte-exact); nothing rejected is stored or delivered; nginx keeps
# serving with the workers it started with.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSEHostile;
use IPC::Open2;
use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

# ---- the helpers are in t/lib/SSEHostile.pm

# ---- the server

my $ES = 'text/event-stream';
my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers => 2,
    http => <<'EOH',
sse_history 10;
sse_heartbeat off;
EOH
    server_extra => <<"EOS",
        listen 127.0.0.1:$h2port http2;
        location = /parg { sse_publish \$arg_ch; }
        location ~ (?s)^/pall/(.+)\$ { sse_publish \$1; }
        location ~ ^/pmax/(.+)\$ { sse_publish \$1; sse_max_message_size 1k; }
        location ~ ^/pbig/(.+)\$ { sse_publish \$1; client_max_body_size 1m; sse_max_message_size 4m; }
        location ~ ^/pbatch/(.+)\$ { sse_publish \$1; sse_history 10000; client_max_body_size 4m; sse_max_events 10000; }
        location ~ ^/pcap/(.+)\$ { sse_publish \$1; sse_history 10000; client_max_body_size 4m; }
EOS
);
my @workers = $srv->worker_pids;
is(scalar @workers, 2, 'two workers');

ok(system("$NODE --version >/dev/null 2>&1") == 0, "node is installed ($NODE)")
    or BAIL_OUT('install nodejs (make deps)');
my $h2 = h2_client();
ok(h2($h2, op => 'connect', session => 'a', port => $h2port)->{ok}, 'HTTP/2 (h2c) session');

# every rejected publish below goes to channel "rej" (or to a bad name):
# this subscriber must see none of it
my $watch = $srv->sse_connect('/events/rej');
is($watch->status, 200, 'a subscriber on the channel the rejected publishes aim at');
my $base = $srv->status;

# runs [name, path, body, {publish opts}, status] cases; one test for the
# statuses, one for the JSON of the errors
sub run_cases {
    my ($what, @cases) = @_;
    my (@st, @js);
    for my $c (@cases) {
        my ($name, $path, $body, $o, $code) = @$c;
        my $r = $srv->publish($path, $body, %{ $o || {} });
        push @st, [$name, $r->{status} == $code ? '' : "status $r->{status} "
                          . SSETest::_show($r->{body} // '')];
        push @js, [$name, json_error_problem($r, $code)] if $code >= 400;
    }
    all_ok("$what: the SPEC status", @st);
    all_ok("$what: every error is one-line JSON", @js) if @js;
}

# ======================================================================
# channel names and lists

{
    my @c17 = map { "c$_" } 1 .. 17;
    run_cases('publish channel lists',
        (map { ["/pub/$_", "/pub/$_", 'x', {}, 400] }
            'a,,b', ',a', 'a,', ',', ',,,', 'a,%20b', '%20a', 'a%09b', join(',', @c17), 'n' x 129),
        (map { ["/parg?$_", "/parg?$_", 'x', {}, 400] } 'ch=', '', 'ch=a,', 'ch=a,,b', 'ch=' . join(',', @c17)),
        ['/pub/ + 16 channels', '/pub/' . join(',', map { "ok$_" } 1 .. 16), 'x', {}, 201],
        ['/pub/ + 16 channels and a duplicate', '/pub/' . join(',', (map { "ok$_" } 1 .. 16), 'ok1'), 'x', {}, 201],
        ['/pub/ + 128 bytes', '/pub/' . ('n' x 128), 'x', {}, 201],
    );
    my $dup = $srv->publish('/pub/ok1,ok1,ok1', 'dup');
    ok($dup->{status} == 201 && ref $dup->{json} eq 'HASH' && $dup->{json}{channel} eq 'ok1',
       'a duplicated channel publishes once: one JSON object, not an array');

    my @forbidden = grep { chr($_) !~ m{[A-Za-z0-9_\-.:\@/,]} } 0 .. 255;
    my (@st, @js, $nul);
    for my $c ((map { ['%-encoded in the path ' . hexb($_), sprintf('/pall/a%%%02Xb', $_)] } @forbidden),
               (map { ['raw in the path ' . hexb($_), '/pall/a' . chr($_) . 'b'] } 0x80 .. 0xFF),
               (map { ['%-encoded in ?ch= ' . hexb($_), sprintf('/parg?ch=a%%%02Xb', $_)] } @forbidden),
               (map { ['raw in ?ch= ' . hexb($_), '/parg?ch=a' . chr($_) . 'b'] }
                    grep { $_ != 0x26 && $_ != 0x23 } grep { $_ > 0x20 && $_ != 0x7f } @forbidden)) {
        for my $m ('POST', 'GET', 'DELETE') {
            my $r = $srv->http($m, $c->[1], ($m eq 'POST' ? (body => 'x') : ()));
            push @st, ["$m $c->[0]", $r->{status} == 400 ? '' : "status $r->{status}"];
            if ($c->[1] eq '/pall/a%00b') { $nul //= $r; next }
            push @js, ["$m $c->[0]", json_error_problem($r, 400)];
        }
    }
    all_ok('forbidden bytes in a publish channel name (POST, GET, DELETE): 400', @st);
    all_ok('forbidden bytes in a publish channel name: one-line JSON error', @js);
    # nginx refuses such a URI itself, before any location (its own page)
    is($nul->{status}, 400, '%00 in a publish path: 400 from nginx');
}
still_serving($srv, 'the publish channel cases');

# ======================================================================
# event types

{
    my @bad = grep { $_ < 0x21 || $_ > 0x7e } 0 .. 255;
    run_cases('event types in ?event=',
        ['empty ?event=', '/pub/rej?event=', 'x', {}, 400],
        ['65 bytes', '/pub/rej?event=' . ('t' x 65), 'x', {}, 400],
        ['65 bytes, %-encoded', '/pub/rej?event=' . ('%74' x 65), 'x', {}, 400],
        ["':'", '/pub/rej?event=a:b', 'x', {}, 400],
        ["'%3A'", '/pub/rej?event=a%3Ab', 'x', {}, 400],
        ["only ':'", '/pub/rej?event=:', 'x', {}, 400],
        (map { ['byte ' . hexb($_), sprintf('/pub/rej?event=a%%%02Xb', $_), 'x', {}, 400] } @bad),
        (map { ['only byte ' . hexb($_), sprintf('/pub/rej?event=%%%02X', $_), 'x', {}, 400] } @bad),
        ['64 bytes (control)', '/pub/typeok?event=' . ('!' x 64), 'x', {}, 201],
        ['64 bytes %-encoded (control)', '/pub/typeok?event=' . ('%7E' x 64), 'x', {}, 201],
    );
    run_cases('event types in a text/event-stream body',
        ['empty event:', '/pub/rej', "event:\ndata: x\n\n", { content_type => $ES }, 400],
        ['event: and a space', '/pub/rej', "event: \ndata: x\n\n", { content_type => $ES }, 400],
        ['65 bytes', '/pub/rej', 'event: ' . ('t' x 65) . "\ndata: x\n\n", { content_type => $ES }, 400],
        ["':'", '/pub/rej', "event: a:b\ndata: x\n\n", { content_type => $ES }, 400],
        ['two spaces', '/pub/rej', "event:  ab\ndata: x\n\n", { content_type => $ES }, 400],
        (map { ['byte ' . hexb($_), '/pub/rej', 'event: a' . chr($_) . "b\ndata: x\n\n", { content_type => $ES }, 400] }
             grep { $_ != 0x0a && $_ != 0x0d } @bad),
        ['a bad type in the second event of a batch', '/pub/rej',
            "event: good\ndata: 1\n\nevent: b\x01d\ndata: 2\n\n", { content_type => $ES }, 400],
        ['64 bytes (control)', '/pub/typeok', 'event: ' . ('~' x 64) . "\ndata: x\n\n", { content_type => $ES }, 201],
    );
}

# ======================================================================
# NUL and UTF-8

my @invalid_utf8 = (
    ['lone continuation 0x80', "\x80"], ['lone continuation 0xBF', "a\xbfb"],
    ['two continuations', "\x80\x80"],
    ['overlong 2-byte C0 80', "\xc0\x80"], ['overlong 2-byte C0 AF', "\xc0\xaf"],
    ['overlong 2-byte C1 BF', "\xc1\xbf"],
    ['overlong 3-byte E0 80 80', "\xe0\x80\x80"], ['overlong 3-byte E0 9F BF', "\xe0\x9f\xbf"],
    ['overlong 4-byte F0 80 80 80', "\xf0\x80\x80\x80"], ['overlong 4-byte F0 8F BF BF', "\xf0\x8f\xbf\xbf"],
    ['surrogate D800', "\xed\xa0\x80"], ['surrogate DBFF', "\xed\xaf\xbf"],
    ['surrogate DC00', "\xed\xb0\x80"], ['surrogate DFFF', "\xed\xbf\xbf"],
    ['surrogate pair (CESU-8)', "\xed\xa0\xbd\xed\xb8\x80"],
    ['U+110000', "\xf4\x90\x80\x80"], ['F5', "\xf5\x80\x80\x80"], ['F7 BF BF BF', "\xf7\xbf\xbf\xbf"],
    ['truncated 2-byte at the end', "ab\xc3"], ['truncated 3-byte at the end', "ab\xe2\x82"],
    ['truncated 4-byte at the end', "ab\xf0\x9f\x98"],
    ['truncated 2-byte in the middle', "a\xc3b"], ['truncated 3-byte in the middle', "a\xe2\x82b"],
    ['truncated 4-byte in the middle', "a\xf0\x9f\x98b"], ['truncated before a newline', "a\xe2\x82\nb"],
    ['lead byte then a lead byte', "\xc3\xc3\xa9"],
    ['0xFE', "a\xfeb"], ['0xFF', "a\xffb"], ['FE FF (UTF-16 BOM)', "\xfe\xff"],
    ['5-byte form', "\xf8\x88\x80\x80\x80"], ['6-byte form', "\xfc\x84\x80\x80\x80\x80"],
    ['Latin-1 text', "caf\xe9"],
    ['valid, then invalid at the end of 64 KB', ('a' x 65535) . "\xc3"],
);
{
    run_cases('NUL bytes',
        ['NUL in the middle', '/pub/rej', "a\0b", {}, 400], ['only NUL', '/pub/rej', "\0", {}, 400],
        ['NUL at the end', '/pub/rej', "a\0", {}, 400],
        ['event-stream NUL in data', '/pub/rej', "data: a\0b\n\n", { content_type => $ES }, 400],
        ['event-stream NUL in the second event', '/pub/rej', "data: ok\n\ndata: \0\n\n", { content_type => $ES }, 400],
    );
    run_cases('invalid UTF-8',
        (map { [$_->[0], '/pub/rej', $_->[1], {}, 400] } @invalid_utf8),
        (map { ["event-stream: $_->[0]", '/pub/rej', "data: $_->[1]\n\n", { content_type => $ES }, 400] }
             grep { length $_->[1] < 1000 } @invalid_utf8),
    );
}

my @valid_utf8 = (
    ['U+0080', "\xc2\x80"], ['U+07FF', "\xdf\xbf"], ['U+0800', "\xe0\xa0\x80"],
    ['U+D7FF', "\xed\x9f\xbf"], ['U+E000', "\xee\x80\x80"], ['U+FFFD', "\xef\xbf\xbd"],
    ['U+FFFE', "\xef\xbf\xbe"], ['U+FFFF', "\xef\xbf\xbf"], ['U+10000', "\xf0\x90\x80\x80"],
    ['U+10FFFF', "\xf4\x8f\xbf\xbf"], ['emoji U+1F600', "\xf0\x9f\x98\x80"],
    ['emoji ZWJ sequence', "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb"],
    ['DEL and controls', "\x01\x1f\x7f"], ['all of them', "x\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\xf0\x9f\x98\x80y"],
);
{
    my $s = $srv->sse_connect('/events/utf');
    is($s->status, 200, 'a subscriber for the valid UTF-8 edge cases');
    my (@st, @want);
    for my $v (@valid_utf8) {
        my $r = $srv->publish('/pub/utf', $v->[1]);
        push @st, [$v->[0], $r->{status} == 201 ? '' : "status $r->{status}"];
        $r = $srv->publish('/pub/utf', "data: $v->[1]\n\n", content_type => $ES);
        push @st, ["event-stream $v->[0]", $r->{status} == 201 ? '' : "status $r->{status}"];
        push @want, $v->[1], $v->[1];
    }
    all_ok('valid UTF-8 edge cases: 201', @st);
    my @ev = $s->read_events(count => scalar @want, timeout => 5);
    is_deeply([map { SSETest::_show($_->{data}) } @ev], [map { SSETest::_show($_) } @want],
              'valid UTF-8 edge cases: delivered byte-exact');
    $s->close;
}
still_serving($srv, 'the type, NUL and UTF-8 cases');

# ======================================================================
# odd bodies

{
    run_cases('bodies that hold no event',
        ['empty body', '/pub/rej', '', {}, 400],
        ['empty event-stream body', '/pub/rej', '', { content_type => $ES }, 400],
        ['all LF', '/pub/rej', "\n" x 100, { content_type => $ES }, 400],
        ['all CRLF', '/pub/rej', "\r\n" x 100, { content_type => $ES }, 400],
        ['all CR', '/pub/rej', "\r" x 100, { content_type => $ES }, 400],
        ['all comments', '/pub/rej', ": a\n: b\n\n:c\n:\n", { content_type => $ES }, 400],
        ['only id: and retry:', '/pub/rej', "id: 1\nretry: 5\n\nid: 2\n\nretry: 9\n", { content_type => $ES }, 400],
        ['only a BOM', '/pub/rej', "\xef\xbb\xbf", { content_type => $ES }, 400],
        ['a BOM and blank lines', '/pub/rej', "\xef\xbb\xbf\n\n\n", { content_type => $ES }, 400],
        ['two BOMs: the second is part of a field name', '/pub/rej', "\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", { content_type => $ES }, 400],
        ['data with no colon, alone (empty data)', '/pub/rej', "data\n\n", { content_type => $ES }, 400],
        ['data: and nothing', '/pub/rej', "data:\n\n", { content_type => $ES }, 400],
        ['unknown fields only', '/pub/rej', "foo: 1\nbar\n\n", { content_type => $ES }, 400],
        ['event and no data', '/pub/rej', "event: x\n\n", { content_type => $ES }, 400],
    );

    # bodies that do hold events: status, count, and what arrives
    my @ok = (
        ['a BOM, then an event', "\xef\xbb\xbfdata: bom\n\n", [['message', 'bom']]],
        ['CR-only line ends', "event: t\rdata: a\rdata: b\r\rdata: c\r\r", [['t', "a\nb"], ['message', 'c']]],
        ['mixed CRLF, LF and CR', "data: 1\r\ndata: 2\rdata: 3\n\r\ndata: 4\r\r\n", [['message', "1\n2\n3"], ['message', '4']]],
        ['a data line with no colon', "data\ndata: x\n\n", [['message', "\nx"]]],
        ['an unknown field with no colon', "foo\ndata: y\n\n", [['message', 'y']]],
        ['data without a space', "data:x\n\n", [['message', 'x']]],
        ['data with two spaces', "data:  x\n\n", [['message', ' x']]],
        ['comments, id and retry around data', ": c\nid: 7\ndata: z\nretry: 1\n: d\n\n", [['message', 'z']]],
        ['no blank line at the end', "data: last", [['message', 'last']]],
        ['leading blank lines', "\n\n\r\n\rdata: lead\n\n", [['message', 'lead']]],
        ['a colon in the value', "data: a: b\n\n", [['message', 'a: b']]],
    );
    my $s = $srv->sse_connect('/events/bodies');
    is($s->status, 200, 'a subscriber for the odd bodies');
    my (@st, @want);
    for my $c (@ok) {
        my $r = $srv->publish('/pub/bodies', $c->[1], content_type => $ES);
        push @st, [$c->[0], ($r->{status} == 201 && ($r->{json}{events} // -1) == @{ $c->[2] })
                            ? '' : "status $r->{status} " . SSETest::_show($r->{body} // '')];
        push @want, map { "$_->[0]|" . SSETest::_show($_->[1]) } @{ $c->[2] };
    }
    # a plain body of newlines only is data: empty lines
    my $r = $srv->publish('/pub/bodies', "\n\n\n");
    push @st, ['text/plain, all LF', $r->{status} == 201 ? '' : "status $r->{status}"];
    push @want, 'message|' . SSETest::_show("\n\n\n");
    all_ok('bodies that hold events: 201 with the right count', @st);
    my @ev = $s->read_events(count => scalar @want, timeout => 5);
    is_deeply([map { "$_->{event}|" . SSETest::_show($_->{data}) } @ev], \@want,
              'bodies that hold events: each arrives as parsed by the WHATWG rules');
    $s->close;
}

# 10,000 tiny events in one body: all or nothing, with a clear status
{
    my $s = $srv->sse_connect('/events/many');
    my $body = join '', map { "data: $_\n\n" } 1 .. 10_000;
    # sse_max_events (default 1000) caps what one publish may carry
    my $capped = $srv->publish('/pcap/many', $body, content_type => $ES, timeout => 30);
    is(json_error_problem($capped, 413), '', '10,000 events over the default sse_max_events: 413 JSON');
    is(scalar($s->read_events(timeout => 0.5)), 0, '... and none delivered');
    my $t0 = time();
    my $r = $srv->publish('/pbatch/many', $body, content_type => $ES, timeout => 30);
    my $took = time() - $t0;
    diag(sprintf '10,000 events in one body (%d bytes): status %s in %.3fs', length $body, $r->{status}, $took);
    is($r->{status}, 201, '10,000 events in one body: 201');
    is($r->{json}{events}, 10_000, '... all 10,000 published');
    my @ev = $s->read_events(count => 10_000, timeout => 20);
    is(scalar @ev, 10_000, '... all 10,000 delivered');
    ok(!grep({ $ev[$_]{data} ne $_ + 1 } 0 .. $#ev), '... in order, each once');
    ok(ids_strictly_increasing(map { $_->{id} } @ev), '... with increasing ids');
    is($ev[-1]{id}, $r->{json}{id}, '... the answer names the last one');
    # all or nothing: one bad event at the very end refuses the whole batch
    my $bad = join('', map { "data: $_\n\n" } 1 .. 9_999) . "data: \xff\n\n";
    $r = $srv->publish('/pbatch/many', $bad, content_type => $ES, timeout => 30);
    is(json_error_problem($r, 400), '', '9,999 good events and one bad one: 400 JSON');
    my @more = $s->read_events(timeout => 0.5);
    is(scalar @more, 0, '... and none of the 10,000 delivered');
    $s->close;
}
still_serving($srv, 'the odd bodies');

# ======================================================================
# sizes: sse_max_message_size (1k on /pmax) and client_max_body_size

{
    run_cases('sse_max_message_size',
        ['exactly 1k', '/pmax/size', 'x' x 1024, {}, 201],
        ['1k + 1', '/pmax/rej', 'x' x 1025, {}, 413],
        ['exactly 1k of 2-byte characters', '/pmax/size', "\xc3\xa9" x 512, {}, 201],
        ['1k + 1 of 2-byte characters and one more byte', '/pmax/rej', ("\xc3\xa9" x 512) . 'x', {}, 413],
        ['event-stream: exactly 1k', '/pmax/size', 'data: ' . ('x' x 1024) . "\n\n", { content_type => $ES }, 201],
        ['event-stream: 1k + 1', '/pmax/rej', 'data: ' . ('x' x 1025) . "\n\n", { content_type => $ES }, 413],
        ['event-stream: two lines, 1k with the LF', '/pmax/size',
            'data: ' . ('x' x 500) . "\ndata: " . ('y' x 523) . "\n\n", { content_type => $ES }, 201],
        ['event-stream: two lines, 1k + 1 with the LF', '/pmax/rej',
            'data: ' . ('x' x 500) . "\ndata: " . ('y' x 524) . "\n\n", { content_type => $ES }, 413],
        ['event-stream: a small event, then one over', '/pmax/rej',
            "data: small\n\ndata: " . ('x' x 1025) . "\n\n", { content_type => $ES }, 413],
        ['event-stream: many events of 1k each', '/pmax/size',
            join('', map { 'data: ' . ('x' x 1024) . "\n\n" } 1 .. 20), { content_type => $ES }, 201],
    );
    my $mb = 1024 * 1024;
    run_cases('client_max_body_size (1m on /pbig)',
        ['Content-Length: exactly 1m', '/pbig/size', 'b' x $mb, {}, 201],
        ['Content-Length: 1m + 1', '/pbig/rej', 'b' x ($mb + 1), {}, 413],
        ['chunked: exactly 1m', '/pbig/size', 'b' x $mb, { chunked => 1, chunk_size => 65536 }, 201],
        ['chunked: 1m + 1', '/pbig/rej', 'b' x ($mb + 1), { chunked => 1, chunk_size => 65536 }, 413],
        ['chunked: 1m + 1 in 1-byte chunks at the end', '/pbig/rej', 'b' x ($mb + 1), { chunked => 1, chunk_size => 4099 }, 413],
        ['Content-Length: 2m (default 1m on /pub)', '/pub/rej', 'b' x (2 * $mb), {}, 413],
    );
}

# a body over client_max_body_size must be refused as soon as nginx knows:
# with Content-Length, before it is sent; chunked, once the limit is passed,
# not after the client has sent all of it
sub partial_chunked {
    my ($path, $total, $send, $wait) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port, Proto => 'tcp')
        or return { status => 0, error => "connect: $!" };
    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $piece = 65536;
    my $chunk = sprintf("%x\r\n", $piece) . ('c' x $piece) . "\r\n";
    my $out = "POST $path HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    my ($queued, $in) = (0, '');
    my $head_in = sub { index($in, "\r\n\r\n") >= 0 };
    my $complete = sub {
        my $he = index($in, "\r\n\r\n");
        return 0 if $he < 0;
        my $h = SSETest::_parse_head(substr($in, 0, $he));
        return length($in) - $he - 4 >= ($h->{headers}{'content-length'} // 0);
    };
    my $read = sub { my $n = sysread($sock, my $b, 65536); $in .= $b if $n; defined $n ? $n : -1 };
    # writes chunks until $limit body bytes are out (then the last chunk if
    # $last), an answer comes, or $secs pass
    my $send_upto = sub {
        my ($limit, $last, $secs) = @_;
        my $end = time() + $secs;
        while (time() < $end) {
            $read->() if $sel->can_read(0);
            return if $head_in->();
            if (!length $out) {
                if ($queued < $limit) { $out = $chunk; $queued += $piece }
                elsif ($last) { $out = "0\r\n\r\n"; $last = 0 }
                else { return }
            }
            next unless $sel->can_write(0.05);
            my $n = syswrite($sock, $out);
            if (!defined $n) { return unless $!{EAGAIN} || $!{EINTR}; next }
            substr($out, 0, $n, '');
        }
    };
    my $wait_answer = sub {
        my $end = time() + $_[0];
        while (!$complete->()) {
            my $left = $end - time();
            last if $left <= 0 || !$sel->can_read($left);
            last if $read->() <= 0;
        }
    };
    $send_upto->($send, 0, 30);
    my $sent = $queued - length $out;
    $wait_answer->($wait);
    my $early = $head_in->() ? 1 : 0;
    $send_upto->($total, 1, 30) unless $early;
    $wait_answer->(10);
    close $sock;
    my $he = index($in, "\r\n\r\n");
    return { status => 0, early => $early, sent => $sent, headers => {}, body => '' } if $he < 0;
    my $r = SSETest::_parse_head(substr($in, 0, $he));
    $r->{body} = substr($in, $he + 4);
    $r->{early} = $early;
    $r->{sent} = $sent;
    return $r;
}

{
    my $mb = 1024 * 1024;
    # Content-Length: 3m, no body sent: the answer comes at once
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port, Proto => 'tcp');
    print $sock "POST /pbig/rej HTTP/1.1\r\nHost: localhost\r\nContent-Length: " . (3 * $mb)
              . "\r\nConnection: close\r\n\r\n";
    my $in = '';
    my $sel = IO::Select->new($sock);
    my $end = time() + 5;
    while (time() < $end && $in !~ /\r\n\r\n.*\}\n/s) {
        last unless $sel->can_read($end - time());
        last unless sysread($sock, $in, 65536, length $in);
    }
    close $sock;
    my ($head, $b) = split /\r\n\r\n/, $in, 2;
    my $r = SSETest::_parse_head($head // '');
    $r->{body} = $b;
    is(json_error_problem($r, 413), '', 'Content-Length 3m over a 1m limit: 413 JSON before any body byte is sent');

    # chunked, 3 MB: only the first 2 MB are sent, then the client waits
    my $t0 = time();
    $r = partial_chunked('/pbig/rej', 3 * $mb, 2 * $mb, 3);
    diag(sprintf 'chunked 3 MB over a 1m limit: answer %s after %d body bytes sent%s (%.1fs)',
         $r->{status}, $r->{sent} // -1, $r->{early} ? '' : ' and the rest', time() - $t0);
    ok($r->{early}, 'chunked body over client_max_body_size: the 413 comes before the client has sent it all (2 MB of 3 MB, then waiting)');
    is(json_error_problem($r, 413), '', 'chunked body over client_max_body_size: 413 JSON');
}
still_serving($srv, 'the size cases');

# ======================================================================
# the same over HTTP/2

{
    my $mb = 1024 * 1024;
    my @p;
    my $req = sub {
        my ($name, $path, $body, $code, %h) = @_;
        my $r = h2($h2, op => 'request', session => 'a', method => 'POST', path => $path,
                   headers => { 'content-type' => 'text/plain', %h }, body_b64 => encode_base64($body, ''),
                   timeout => 10000);
        push @p, ["HTTP/2 $name", $code >= 400 ? json_error_problem($r, $code)
                                  : (($r->{status} // 0) == $code ? '' : "status $r->{status}")];
    };
    $req->('NUL', '/pub/rej', "a\0b", 400);
    $req->('invalid UTF-8', '/pub/rej', "a\xc0\xafb", 400);
    $req->('surrogate', '/pub/rej', "\xed\xa0\x80", 400);
    $req->('empty body', '/pub/rej', '', 400);
    $req->('bad type', '/pub/rej?event=a%20b', 'x', 400);
    $req->('bad channel', '/pub/a%20b', 'x', 400);
    $req->('over sse_max_message_size', '/pmax/rej', 'x' x 1025, 413);
    $req->('event-stream over sse_max_message_size', '/pmax/rej', 'data: ' . ('x' x 1025) . "\n\n", 413,
           'content-type' => $ES);
    $req->('at sse_max_message_size', '/pmax/size', 'x' x 1024, 201);
    $req->('valid U+10FFFF', '/pub/h2utf', "\xf4\x8f\xbf\xbf", 201);
    $req->('1m + 1 with content-length', '/pbig/rej', 'b' x ($mb + 1), 413, 'content-length' => $mb + 1);
    $req->('1m + 1 without content-length', '/pbig/rej', 'b' x ($mb + 1), 413);
    $req->('exactly 1m without content-length', '/pbig/size', 'b' x $mb, 201);
    all_ok('HTTP/2 publishes: the SPEC status and JSON errors', @p);

    my $r = h2($h2, op => 'partial', session => 'a', path => '/pbig/rej',
               headers => { 'content-type' => 'text/plain', 'content-length' => 3 * $mb },
               total => 3 * $mb, send => 0, wait => 3000);
    ok($r->{answered_early}, 'HTTP/2 content-length 3m over a 1m limit: answered before any body is sent');
    is(json_error_problem($r, 413), '', 'HTTP/2 content-length 3m over a 1m limit: 413 JSON');

    my $t0 = time();
    $r = h2($h2, op => 'partial', session => 'a', path => '/pbig/rej',
            headers => { 'content-type' => 'text/plain' }, total => 3 * $mb, send => 2 * $mb, wait => 3000,
            timeout => 20000);
    diag(sprintf 'HTTP/2 3 MB without content-length over a 1m limit: answer %s after %d body bytes%s (%.1fs)',
         $r->{status}, $r->{sent_before_answer} // -1, $r->{answered_early} ? '' : ' and the rest', time() - $t0);
    ok($r->{answered_early}, 'HTTP/2 body without content-length over the limit: the 413 comes before the client has sent it all');
    is(json_error_problem($r, 413), '', 'HTTP/2 body without content-length over the limit: 413 JSON');
}
still_serving($srv, 'the HTTP/2 publishes');

# ======================================================================
# methods

{
    my (@m, @allow, @js);
    my $allow = 'GET, POST, PUT, DELETE';
    for my $m (qw(PATCH OPTIONS PROPFIND FROBNICATE HEAD)) {
        my $r = $srv->http($m, '/pub/rej', ($m eq 'PATCH' ? (body => 'x') : ()));
        push @m, [$m, $r->{status} == 405 ? '' : "status $r->{status}"];
        push @allow, [$m, ($r->{headers}{allow} // '') eq $allow ? '' : "Allow '" . ($r->{headers}{allow} // '') . "'"];
        if ($m eq 'HEAD') {
            push @js, [$m, ($r->{headers}{'content-type'} // '') =~ m{^application/json} && $r->{body} eq ''
                           ? '' : 'Content-Type ' . ($r->{headers}{'content-type'} // '') . ', body ' . length $r->{body}];
        } else {
            push @js, [$m, json_error_problem($r, 405)];
        }
    }
    for my $m (qw(PATCH OPTIONS PROPFIND FROBNICATE HEAD)) {
        my $r = h2($h2, op => 'request', session => 'a', method => $m, path => '/pub/rej');
        push @m, ["HTTP/2 $m", ($r->{status} // 0) == 405 ? '' : "status $r->{status}"];
        push @allow, ["HTTP/2 $m", ($r->{headers}{allow} // '') eq $allow ? '' : "Allow '" . ($r->{headers}{allow} // '') . "'"];
        push @js, ["HTTP/2 $m", json_error_problem($r, 405)] unless $m eq 'HEAD';
    }
    all_ok('other methods on a publish location (HEAD too): 405', @m);
    all_ok("other methods on a publish location: Allow: $allow", @allow);
    all_ok('other methods on a publish location: JSON error', @js);
    # TRACE and CONNECT are refused by nginx itself before any location
    # runs (its own page: README, "Behaviour where the spec is silent")
    for my $m (qw(TRACE CONNECT)) {
        my $r = $srv->http($m, '/pub/rej');
        is($r->{status}, 405, "$m on a publish location: 405 from nginx");
    }
}
still_serving($srv, 'the method cases');

# ======================================================================
# nothing of the rejected requests was stored or delivered

{
    my @ev = $watch->read_events(timeout => 0.5);
    is(scalar @ev, 0, 'the subscriber of "rej" received no event')
        or diag(join ' | ', map { SSETest::_show(substr($_->{data}, 0, 30)) } @ev[0 .. ($#ev > 5 ? 5 : $#ev)]);
    ok(!$watch->is_closed(0), '... and is still connected');
    my $g = $srv->http('GET', '/pub/rej');
    is($g->{json}{events}, 0, 'GET /pub/rej: no event kept');
    is($g->{json}{id}, '', 'GET /pub/rej: no id ever given');
    $watch->close;
}

is(h2($h2, op => 'session_state', session => 'a')->{closed}, JSONBool::FALSE(),
   'the HTTP/2 session survived all of it');
h2_end($h2);
is_deeply([$srv->worker_pids], \@workers, 'the same workers as at the start (none crashed)');
$srv->stop;
done_testing;
