#!/usr/bin/perl
# Event framing: exact bytes on the wire and the data a WHATWG parser
# rebuilds, for LF / CRLF / lone CR data, event types, event-stream bodies,
# large bodies; and the shape of the publish answer.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(workers => 2);

my $s = $srv->sse_connect('/events/f');
is($s->status, 200, 'subscriber open');
ok($s->wait_for(qr/\Aretry: 3000\n\n/, 2), 'retry line');
$s->take_raw;

sub normalized { my $d = shift; $d =~ s/\r\n|\r/\n/g; return $d }

sub show { my $x = shift; $x =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge; $x }

# publish, then check the exact frame and the parsed event
sub check_publish {
    my (%c) = @_;
    my $name = $c{name};
    my $r = $srv->publish('/pub/f', $c{body}, %{ $c{opts} || {} });
    is($r->{status}, 201, "$name: 201")
        or diag($r->{body});
    my $id = $r->{json}{id} // '';
    ok(defined(parse_id($id)), "$name: answer carries an id");
    my $expected = join '', map {
        sse_frame($_->[0], $_->[1], $_->[2])
    } @{ $c{expect_frames}->($id, $r) };
    ok($s->wait_new(qr/\Q$expected\E/, 3), "$name: frame arrives");
    my $got = $s->take_raw;
    is(show($got), show($expected), "$name: exact bytes on the wire");
    my @ev = $s->read_events(count => scalar @{ $c{expect_events} }, timeout => 2);
    is(scalar @ev, scalar @{ $c{expect_events} }, "$name: event count");
    for my $i (0 .. $#{ $c{expect_events} }) {
        my ($type, $data) = @{ $c{expect_events}[$i] };
        is($ev[$i]{event}, $type, "$name: event $i type");
        is(show($ev[$i]{data} // ''), show($data), "$name: event $i data");
    }
    is($ev[-1]{id}, $id, "$name: last event id equals the answer's id") if @ev;
    return $r;
}

# --- plain bodies: one event, data split on CRLF, LF, lone CR
my @plain = (
    ['single line',             'hello'],
    ['LF lines',                "a\nb\nc"],
    ['CRLF lines',              "a\r\nb\r\nc"],
    ['lone CR lines',           "a\rb\rc"],
    ['mixed line ends',         "x\r\ny\nz\rw"],
    ['empty middle line LF',    "a\n\nb"],
    ['empty middle line CRLF',  "a\r\n\r\nb"],
    ['empty middle line CR',    "a\r\rb"],
    ['trailing LF',             "a\n"],
    ['trailing CRLF',           "a\r\n"],
    ['trailing CR',             "a\r"],
    ['leading LF',              "\na"],
    ['CR then LF kept as one',  "p\r\nq"],
    ['LF then CR is two breaks', "p\n\rq"],
    ['leading space kept',      ' spaced: yes'],
    ['looks like fields',       "event: fake\nid: 1-1\nretry: 1\n\ndata: x"],
    ['colon first',             ":not a comment"],
    ['UTF-8',                   "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"],
    ['tabs and symbols',        "\ttab\t{\"json\": [1, 2]}"],
);
for my $c (@plain) {
    my ($name, $body) = @$c;
    check_publish(
        name => $name, body => $body,
        expect_frames => sub { [[ $_[0], 'message', $body ]] },
        expect_events => [[ 'message', normalized($body) ]],
    );
}

# --- event types through ?event=
for my $type ('tick', 'a-b_c.d!', 'x' x 64, '~weird#type$', 'UPPER') {
    check_publish(
        name => "?event=$type", body => "typed", opts => { type => $type },
        expect_frames => sub { [[ $_[0], $type, 'typed' ]] },
        expect_events => [[ $type, 'typed' ]],
    );
}
check_publish(
    name => '?event=message is omitted', body => 'm', opts => { type => 'message' },
    expect_frames => sub { [[ $_[0], 'message', 'm' ]] },
    expect_events => [[ 'message', 'm' ]],
);

# --- event types and data through text/event-stream bodies
check_publish(
    name => 'event-stream body with type',
    body => "event: update\ndata: one\ndata: two\n\n",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'update', "one\ntwo" ]] },
    expect_events => [[ 'update', "one\ntwo" ]],
);
check_publish(
    name => 'event-stream body CRLF',
    body => "event: crlf\r\ndata: a\r\ndata: b\r\n\r\n",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'crlf', "a\nb" ]] },
    expect_events => [[ 'crlf', "a\nb" ]],
);
check_publish(
    name => 'event-stream body lone CR',
    body => "event: cr\rdata: a\rdata: b\r\r",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'cr', "a\nb" ]] },
    expect_events => [[ 'cr', "a\nb" ]],
);
check_publish(
    name => 'event-stream body without final blank line',
    body => "data: last",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'message', 'last' ]] },
    expect_events => [[ 'message', 'last' ]],
);
check_publish(
    name => 'event-stream: no space after colon, two spaces',
    body => "data:tight\ndata:  loose\n\n",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'message', "tight\n loose" ]] },
    expect_events => [[ 'message', "tight\n loose" ]],
);
check_publish(
    name => 'event-stream: id, retry, comments, unknown fields ignored',
    body => ": a comment\nid: 42\nretry: 10\nfoo: bar\ndata: kept\n\n",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'message', 'kept' ]] },
    expect_events => [[ 'message', 'kept' ]],
);
check_publish(
    name => 'event-stream: explicit event: message is omitted',
    body => "event: message\ndata: mm\n\n",
    opts => { content_type => 'text/event-stream' },
    expect_frames => sub { [[ $_[0], 'message', 'mm' ]] },
    expect_events => [[ 'message', 'mm' ]],
);
check_publish(
    name => 'event-stream with charset parameter',
    body => "event: cs\ndata: c\n\n",
    opts => { content_type => 'text/event-stream; charset=utf-8' },
    expect_frames => sub { [[ $_[0], 'cs', 'c' ]] },
    expect_events => [[ 'cs', 'c' ]],
);

# --- a text/plain body that looks like an event stream is data
check_publish(
    name => 'text/plain body is data verbatim',
    body => "event: no\ndata: no\n\n",
    opts => { content_type => 'text/plain' },
    expect_frames => sub { [[ $_[0], 'message', "event: no\ndata: no\n\n" ]] },
    expect_events => [[ 'message', "event: no\ndata: no\n\n" ]],
);

# --- PUT publishes as POST does
check_publish(
    name => 'PUT', body => 'put-data', opts => { method => 'PUT' },
    expect_frames => sub { [[ $_[0], 'message', 'put-data' ]] },
    expect_events => [[ 'message', 'put-data' ]],
);

# --- large bodies (beyond client_body_buffer_size: nginx may keep them in a file)
{
    my $big = join '', map { chr(ord('a') + $_ % 26) } 0 .. 60_999;
    check_publish(
        name => '61000-byte single line', body => $big,
        expect_frames => sub { [[ $_[0], 'message', $big ]] },
        expect_events => [[ 'message', $big ]],
    );
    my $lines = join "\n", map { "line $_ " . ('z' x 40) } 1 .. 1200;
    check_publish(
        name => 'many-line 60k body', body => $lines,
        expect_frames => sub { [[ $_[0], 'message', $lines ]] },
        expect_events => [[ 'message', $lines ]],
    );
}

# --- the publish answer
{
    my $r = $srv->publish('/pub/f', 'answer');
    is($r->{status}, 201, 'answer: 201 Created');
    like($r->{headers}{'content-type'} // '', qr{^application/json}, 'answer: application/json');
    like($r->{body}, qr/\A\{[^\n]*\}\n?\z/, 'answer: one line JSON object');
    my $j = $r->{json};
    is(ref $j, 'HASH', 'answer: object');
    is($j->{channel}, 'f', 'answer: channel');
    like($j->{id} // '', qr/\A\d+-\d+\z/, 'answer: id <ms>-<seq>');
    is($j->{events}, 1, 'answer: events 1');
    is($j->{subscribers}, 1, 'answer: subscribers 1');
    like($r->{body}, qr/"events":1\b/, 'answer: events is a JSON number');
    like($r->{body}, qr/"subscribers":1\b/, 'answer: subscribers is a JSON number');
    like($r->{body}, qr/"id":"\d+-\d+"/, 'answer: id is a JSON string');
    $s->read_events(count => 1, timeout => 2);
    $s->take_raw;
}

# no stray bytes after everything
$s->read_events(timeout => 0.3);
is($s->take_raw, '', 'no extra bytes on the stream');
$s->close;
$srv->stop;
done_testing;
