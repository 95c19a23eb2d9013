#!/usr/bin/perl
# Every error status of SPEC.md, with one-line JSON {"error":...} bodies,
# and proof afterwards that nothing was stored or delivered.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 2,
    server_extra => <<'EOS',
        location ~ ^/pubmax/(.+)$ { sse_publish $1; sse_max_message_size 1k; }
        location ~ ^/pubsmall/(.+)$ { sse_publish $1; client_max_body_size 2k; }
EOS
);

my $ES = 'text/event-stream';

# controls first: the limits accept what they should
{
    my $r = $srv->publish('/pubmax/errok', 'x' x 1024);
    is($r->{status}, 201, 'data of exactly sse_max_message_size (1k): 201');
    $r = $srv->publish('/pubsmall/errok', 'y' x 2048);
    is($r->{status}, 201, 'body of exactly client_max_body_size (2k): 201');
    $r = $srv->publish('/pub/errok', 'z', type => '!' x 64);
    is($r->{status}, 201, '64-byte event type: 201');
}

my $sub = $srv->sse_connect('/events/err');
is($sub->status, 200, 'subscriber on err');
$sub->wait_for(qr/\n\n/, 2);
my $base = $srv->status;
my $base_err = $srv->http('GET', '/pub/err');

my @cases = (
    # name, path, body, %opts, status
    ['empty body', '/pub/err', '', {}, 400],
    ['empty event-stream body', '/pub/err', '', { content_type => $ES }, 400],
    ['event-stream body with only a comment', '/pub/err', ": nothing\n\n", { content_type => $ES }, 400],
    ['event-stream event without data', '/pub/err', "event: x\n\n", { content_type => $ES }, 400],
    ['event type with a space', '/pub/err', 'd', { type => 'a b' }, 400],
    ['event type with a colon', '/pub/err', 'd', { type => 'a:b' }, 400],
    ['event type of 65 bytes', '/pub/err', 'd', { type => 'x' x 65 }, 400],
    ['event type with a control byte', '/pub/err', 'd', { type => "a\x01b" }, 400],
    ['event type with DEL', '/pub/err', 'd', { type => "a\x7f" }, 400],
    ['event type with a tab', '/pub/err', 'd', { type => "a\tb" }, 400],
    ['event type not ASCII', '/pub/err', 'd', { type => "caf\xc3\xa9" }, 400],
    ['event-stream event type with a space', '/pub/err', "event: a b\ndata: x\n\n", { content_type => $ES }, 400],
    ['NUL byte', '/pub/err', "a\0b", {}, 400],
    ['NUL byte only', '/pub/err', "\0", {}, 400],
    ['NUL byte in event-stream data', '/pub/err', "data: a\0b\n\n", { content_type => $ES }, 400],
    ['invalid UTF-8 (0xff)', '/pub/err', "ab\xffcd", {}, 400],
    ['invalid UTF-8 (overlong)', '/pub/err', "\xc0\xaf", {}, 400],
    ['invalid UTF-8 (surrogate)', '/pub/err', "\xed\xa0\x80", {}, 400],
    ['invalid UTF-8 (truncated)', '/pub/err', "ab\xe2\x82", {}, 400],
    ['invalid UTF-8 (beyond U+10FFFF)', '/pub/err', "\xf4\x90\x80\x80", {}, 400],
    ['invalid UTF-8 (lone continuation)', '/pub/err', "a\x80b", {}, 400],
    ['data over sse_max_message_size', '/pubmax/err', 'x' x 1025, {}, 413],
    ['event-stream data over sse_max_message_size', '/pubmax/err', 'data: ' . ('x' x 1025) . "\n\n", { content_type => $ES }, 413],
    ['body over client_max_body_size (Content-Length)', '/pubsmall/err', 'y' x 3000, {}, 413],
    ['body over client_max_body_size (chunked)', '/pubsmall/err', 'y' x 3000, { chunked => 1, chunk_size => 500 }, 413],
);

for my $c (@cases) {
    my ($name, $path, $body, $o, $code) = @$c;
    my $r = $srv->publish($path, $body, %$o);
    check_json_error($r, $code, $name);
}

# bad channel names on publish and on stream
for my $bad ('bad!name', 'bad%20name', 'caf%C3%A9', 'a*b', 'semi;colon', 'q%3Fmark', 'x' x 129, 'back%5Cslash') {
    check_json_error($srv->publish("/pub/$bad", 'data'), 400, "publish to bad channel '$bad'");
    check_json_error($srv->http('GET', "/events/$bad"), 400, "stream of bad channel '$bad'");
    check_json_error($srv->http('GET', "/pub/$bad"), 400, "GET of bad channel '$bad'");
}

# 405 with Allow on both endpoints
for my $m ('PATCH', 'OPTIONS', 'PROPFIND') {
    my $r = $srv->http($m, '/pub/err');
    check_json_error($r, 405, "$m on the publish endpoint");
    is($r->{headers}{allow}, 'GET, POST, PUT, DELETE', "$m on the publish endpoint: Allow header");
}
for my $m ('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS') {
    my $r = $srv->http($m, '/events/err', ($m eq 'POST' || $m eq 'PUT' ? (body => 'x') : ()));
    check_json_error($r, 405, "$m on the stream endpoint");
    is($r->{headers}{allow}, 'GET, HEAD', "$m on the stream endpoint: Allow header");
}

# nothing stored, nothing delivered
{
    my @ev = $sub->read_events(timeout => 0.7);
    is(scalar @ev, 0, 'subscriber received no event from the rejected requests')
        or diag(join ' | ', map { substr($_->{data}, 0, 40) } @ev);
    is($sub->raw, "retry: 3000\n\n", 'subscriber received no bytes beyond the retry line');
    ok(!$sub->is_closed(0), 'subscriber still connected');
    my $g = $srv->http('GET', '/pub/err');
    is($g->{status}, 200, 'GET err: 200 (it has a subscriber)');
    is($g->{json}{events}, 0, 'GET err: 0 events kept');
    is($g->{json}{id}, '', 'GET err: no id was ever given');
    is($g->{json}{events}, $base_err->{json}{events}, 'GET err: unchanged');
    for my $ch ('err2', 'bad') {
        is($srv->http('GET', "/pub/$ch")->{status}, 404, "GET $ch: 404");
    }
    my $st = $srv->status;
    is($st->{events_published}, $base->{events_published}, 'status: events_published unchanged');
    is($st->{events_kept}, $base->{events_kept}, 'status: events_kept unchanged');
    is($st->{channels}, $base->{channels}, 'status: no channel created');
    is($st->{subscribers}, 1, 'status: one subscriber');
}

# the same errors against a channel nobody subscribes to: still 404 afterwards
{
    for my $c (@cases) {
        my ($name, $path, $body, $o, $code) = @$c;
        (my $p2 = $path) =~ s{/err$}{/err2};
        my $r = $srv->publish($p2, $body, %$o);
        check_json_error($r, $code, "err2: $name");
    }
    is($srv->http('GET', '/pub/err2')->{status}, 404, 'err2 after every rejected publish: still 404');
    is($srv->http('GET', '/pubmax/err2')->{status}, 404, 'err2 via /pubmax: 404');
}

# after all that, the hub works
{
    my $r = $srv->publish('/pub/err', 'finally');
    is($r->{status}, 201, 'a good publish after the errors: 201');
    my @ev = $sub->read_events(count => 1, timeout => 3);
    is($ev[0]{data} // '', 'finally', 'and it is delivered');
}

$sub->close;
$srv->stop;
done_testing;
