#!/usr/bin/perl
# Batch publish (text/event-stream bodies with several events), all or
# nothing, and publish locations naming several channels.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 2,
    http => "sse_history 1000;\nclient_max_body_size 4m;\n",
    server_extra => <<'EOS',
        location = /multi { sse_publish mA,mB; }
        location ~ ^/pubmax/(.+)$ { sse_publish $1; sse_max_message_size 1k; }
EOS
);

my $ES = 'text/event-stream';
sub ids_of { map { $_->{id} // 'undef' } @_ }
sub show { my $x = shift // ''; $x =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge; $x }

my $s = $srv->sse_connect('/events/b');
$s->wait_for(qr/retry: \d+\n\n/, 2);
$s->take_raw;

# --- a batch with types, multi-line data, comments, ignored id/retry
{
    my $body = "event: a\ndata: 1\n\ndata: 2\ndata: 3\n\n: comment\nid: 99\nretry: 5\ndata: 4";
    my $r = $srv->publish('/pub/b', $body, content_type => $ES);
    is($r->{status}, 201, 'batch: 201');
    is($r->{json}{events}, 3, 'batch: "events":3');
    is($r->{json}{channel}, 'b', 'batch: channel');
    is($r->{json}{subscribers}, 1, 'batch: subscribers');
    my @ev = $s->read_events(count => 3, timeout => 3);
    push @ev, $s->read_events(timeout => 0.3);
    is(scalar @ev, 3, 'batch: 3 events delivered');
    is_deeply([map { [$_->{event}, $_->{data}] } @ev],
              [['a', '1'], ['message', "2\n3"], ['message', '4']], 'batch: types and data, in order');
    ok(ids_strictly_increasing(ids_of(@ev)), 'batch: ids increasing');
    is($ev[-1]{id}, $r->{json}{id}, 'batch: answer id is the id of the last event');
    my $raw = $s->take_raw;
    my $expect = sse_frame($ev[0]{id}, 'a', '1') . sse_frame($ev[1]{id}, 'message', "2\n3")
               . sse_frame($ev[2]{id}, 'message', '4');
    is(show($raw), show($expect), 'batch: exact bytes (no id: 99, no retry: 5, no comment)');
}

# --- line endings and blank-line handling in batches
my @cases = (
    ['CRLF batch', "event: x\r\ndata: y\r\n\r\ndata: z\r\n\r\n", [['x', 'y'], ['message', 'z']]],
    ['CR batch', "event: x\rdata: y\r\rdata: z\r\r", [['x', 'y'], ['message', 'z']]],
    ['extra blank lines', "\n\n\ndata: p\n\n\n\ndata: q\n", [['message', 'p'], ['message', 'q']]],
    ['unknown fields', "foo: bar\ndata: u\nbaz\n\n", [['message', 'u']]],
    ['type resets per event', "event: t1\ndata: a\n\ndata: b\n\n", [['t1', 'a'], ['message', 'b']]],
    ['last type wins', "event: one\nevent: two\ndata: c\n\n", [['two', 'c']]],
    ['data with colons', "data: k: v\ndata:: w\n\n", [['message', "k: v\n: w"]]],
    ['leading byte order mark', "\xef\xbb\xbfevent: bom\ndata: m\n\n", [['bom', 'm']]],
);
for my $c (@cases) {
    my ($name, $body, $want) = @$c;
    my $r = $srv->publish('/pub/b', $body, content_type => $ES);
    is($r->{status}, 201, "$name: 201") or diag($r->{body});
    is($r->{json}{events}, scalar @$want, "$name: events " . scalar @$want);
    my @ev = $s->read_events(count => scalar @$want, timeout => 3);
    push @ev, $s->read_events(timeout => 0.2);
    is_deeply([map { [$_->{event}, $_->{data}] } @ev], $want, "$name: delivered as expected");
    $s->take_raw;
}

# --- a big batch: 500 events in one request, published in order
{
    my $body = join '', map { "event: n$_\ndata: item $_\n\n" } 1 .. 500;
    my $r = $srv->publish('/pub/b', $body, content_type => $ES);
    is($r->{status}, 201, '500-event batch: 201');
    is($r->{json}{events}, 500, '500-event batch: "events":500');
    my @ev = $s->read_events(count => 500, timeout => 10);
    is(scalar @ev, 500, '500-event batch: all delivered');
    is_deeply([map { $_->{data} } @ev], [map { "item $_" } 1 .. 500], '500-event batch: in order');
    is_deeply([map { $_->{event} } @ev], [map { "n$_" } 1 .. 500], '500-event batch: types');
    ok(ids_strictly_increasing(ids_of(@ev)), '500-event batch: ids increasing');
    is($ev[-1]{id}, $r->{json}{id}, '500-event batch: answer id is the last');
    my ($s2) = $srv->sse_connect('/events/b', headers => { 'Last-Event-ID' => $ev[249]{id} });
    my @rep = $s2->read_events(count => 250, timeout => 5);
    is_deeply([ids_of(@rep)], [ids_of(@ev[250 .. 499])], 'batch events are kept and replayable');
    $s2->close;
    $s->take_raw;
}

# --- all or nothing
{
    my $kept = $srv->http('GET', '/pub/b')->{json}{events};
    my $pubd = $srv->stat('events_published');
    my @bad = (
        ['bad type in the middle', "data: 1\n\nevent: bad type\ndata: 2\n\ndata: 3\n\n", 400, '/pub/b'],
        ['colon in type', "data: 1\n\nevent: a:b\ndata: 2\n\n", 400, '/pub/b'],
        ['NUL in the last event', "data: 1\n\ndata: 2\0\n\n", 400, '/pub/b'],
        ['invalid UTF-8 in one event', "data: ok\n\ndata: \xff\xfe\n\n", 400, '/pub/b'],
        ['event without data', "data: 1\n\nevent: lonely\n\n", 400, '/pub/b'],
        ['one event over sse_max_message_size', "data: small\n\ndata: " . ('x' x 1025) . "\n\n", 413, '/pubmax/b'],
        ['lines adding up over sse_max_message_size',
         "data: small\n\n" . join('', map { "data: " . ('y' x 99) . "\n" } 1 .. 11) . "\n", 413, '/pubmax/b'],
    );
    for my $c (@bad) {
        my ($name, $body, $code, $path) = @$c;
        my $r = $srv->publish($path, $body, content_type => $ES);
        check_json_error($r, $code, "batch, $name");
    }
    my @ev = $s->read_events(timeout => 0.5);
    is(scalar @ev, 0, 'rejected batches: nothing delivered')
        or diag(join ' | ', map { $_->{data} } @ev);
    is($s->take_raw, '', 'rejected batches: no bytes on the stream');
    is($srv->http('GET', '/pub/b')->{json}{events}, $kept, 'rejected batches: nothing kept');
    is($srv->stat('events_published'), $pubd, 'rejected batches: events_published unchanged');

    my $ok = $srv->publish('/pubmax/b', "data: " . ('x' x 1024) . "\n\ndata: y\n\n", content_type => $ES);
    is($ok->{status}, 201, 'a batch whose largest event is exactly sse_max_message_size: 201');
    is($ok->{json}{events}, 2, '...with 2 events');
    my @got = $s->read_events(count => 2, timeout => 3);
    is_deeply([map { $_->{data} } @got], ['x' x 1024, 'y'], '...delivered whole');
    is($got[-1]{id}, $ok->{json}{id}, '...the last with the id of the answer');
    $s->take_raw;
}

# --- a publish location naming several channels
{
    my $a  = $srv->sse_connect('/events/mA');
    my $ab = $srv->sse_connect('/events/mA,mB');
    my $r = $srv->publish('/multi', 'to both');
    is($r->{status}, 201, 'two-channel publish: 201');
    like($r->{body}, qr/\A\[[^\n]*\]\n?\z/, 'two-channel publish: one-line JSON array');
    my $j = $r->{json};
    is(ref $j, 'ARRAY', 'answer is an array');
    is(scalar @{ $j || [] }, 2, 'with two objects');
    is_deeply([map { $_->{channel} } @{ $j || [] }], ['mA', 'mB'], 'one per channel, in order');
    is_deeply([map { $_->{events} } @{ $j || [] }], [1, 1], 'events 1 each');
    is_deeply([map { $_->{subscribers} } @{ $j || [] }], [2, 1], 'subscribers per channel');
    my ($idA, $idB) = map { $_->{id} } @{ $j || [] };
    ok(defined $idA && defined $idB && $idA ne $idB, 'each channel has its own id');
    my @ga = $a->read_events(count => 1, timeout => 3);
    push @ga, $a->read_events(timeout => 0.3);
    is_deeply([ids_of(@ga)], [$idA], 'mA subscriber: one event with mA\'s id');
    my @gab = $ab->read_events(count => 2, timeout => 3);
    push @gab, $ab->read_events(timeout => 0.3);
    is_deeply([sort(ids_of(@gab))], [sort($idA, $idB)], 'mA,mB subscriber: one event per channel');
    ok(ids_strictly_increasing(ids_of(@gab)), 'mA,mB subscriber: in id order');

    $r = $srv->publish('/multi', "data: 1\n\ndata: 2\n\n", content_type => $ES);
    is($r->{status}, 201, 'two-channel batch: 201');
    is_deeply([map { $_->{events} } @{ $r->{json} || [] }], [2, 2], 'two-channel batch: 2 events each');
    my @g = $a->read_events(count => 2, timeout => 3);
    is_deeply([map { $_->{data} } @g], ['1', '2'], 'mA got the batch');
    is($g[-1]{id}, $r->{json}[0]{id}, 'mA answer id is its last event');
    $a->close;
    $ab->close;
}

$s->close;
$srv->stop;
done_testing;
