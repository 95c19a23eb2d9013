#!/usr/bin/perl
# Self-test of the harness's parsers (no nginx needed): the WHATWG
# text/event-stream parser, the JSON decoder, id comparison, de-chunking.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

sub parse_all {
    my @chunks = @_;
    my $p = SSETest::Parser->new;
    my @ev;
    for my $c (@chunks) { $p->feed($c); push @ev, $p->take }
    $p->finish;
    push @ev, $p->take;
    return ($p, @ev);
}

# WHATWG examples
{
    my ($p, @ev) = parse_all("data: YHOO\ndata: +2\ndata: 10\n\n");
    is(scalar @ev, 1, 'stock example: one event');
    is($ev[0]{data}, "YHOO\n+2\n10", 'stock example: data joined with LF');
    is($ev[0]{event}, 'message', 'default type is message');
    is($ev[0]{id}, undef, 'no id field');
}
{
    my ($p, @ev) = parse_all(": test stream\n\ndata: first event\nid: 1\n\n"
        . "data:second event\nid\n\ndata:  third event\n\n");
    is(scalar @ev, 3, 'three events');
    is($ev[0]{data}, 'first event', 'first');
    is($ev[0]{id}, '1', 'first id');
    is($ev[1]{data}, 'second event', 'second (no space after colon)');
    is($ev[1]{last_event_id}, '', 'empty id resets last event id');
    is($ev[2]{data}, ' third event', 'only one leading space is stripped');
    is($ev[2]{last_event_id}, '', 'last event id persists');
    is_deeply([$p->{all_comments} ? @{ $p->{all_comments} } : ()], [' test stream'], 'comment recorded');
}
{
    my ($p, @ev) = parse_all("data\n\ndata\ndata\n\ndata:");
    is(scalar @ev, 2, 'unterminated last event is dropped');
    is($ev[0]{data}, '', 'data with no value');
    is($ev[1]{data}, "\n", 'two empty data lines');
}
{
    my ($p, @ev) = parse_all("data: a\r", "\ndata: b\r", "\r", "event: t\rdata: c\r\n\r\n");
    is(scalar @ev, 2, 'CR / CRLF split across reads');
    is($ev[0]{data}, "a\nb", 'CR then LF in the next read is one line break');
    is($ev[1]{data}, 'c', 'lone CR lines');
    is($ev[1]{event}, 't', 'event type');
}
{
    my ($p, @ev) = parse_all("retry: 3000\n\nid: 5-1\nevent: x\n\n: heartbeat\n\ndata: z\n\n");
    is($p->{retry}, '3000', 'retry field');
    is(scalar @ev, 1, 'blocks without data dispatch nothing');
    is($ev[0]{data}, 'z', 'data');
    is($ev[0]{event}, 'message', 'event type reset by the empty block');
    is($ev[0]{id}, undef, 'id field of the empty block does not stick to the next event');
    is($ev[0]{last_event_id}, '5-1', 'but the last event id buffer does');
    is_deeply($ev[0]{comments}, [' heartbeat'], 'comments before the event');
}
{
    my ($p, @ev) = parse_all("\xEF\xBB\xBFdata: bom\n\n");
    is($ev[0]{data}, 'bom', 'leading BOM ignored');
}

# JSON
{
    my $j = json_decode(qq({"a":1,"b":"x\\n\\u00e9","c":[1,-2.5,"s"],"d":true,"e":null,"f":{}}\n));
    is($j->{a}, 1, 'json number');
    is($j->{b}, "x\n\xc3\xa9", 'json string escapes (UTF-8 bytes)');
    is_deeply($j->{c}, [1, -2.5, 's'], 'json array');
    ok($j->{d}, 'json true');
    ok(exists $j->{e} && !defined $j->{e}, 'json null');
    is_deeply($j->{f}, {}, 'json empty object');
    ok(!eval { json_decode('{"a":1} x'); 1 }, 'json trailing garbage rejected');
    ok(!eval { json_decode('{"a":1,"a":2}'); 1 }, 'json duplicate key rejected');
    ok(!eval { json_decode("{\"a\":\"\x01\"}"); 1 }, 'json raw control char rejected');
    ok(!eval { json_decode('{"a":01}'); 1 }, 'json leading zero rejected');
    is_deeply(json_decode(json_encode({ x => "q\"\n", y => [1, 2] })),
              { x => "q\"\n", y => [1, 2] }, 'json round trip');
}

# ids
{
    ok(id_cmp('10-1', '9-5') > 0, 'ms compared first');
    ok(id_cmp('5-10', '5-9') > 0, 'then sequence, numerically');
    ok(id_cmp('1732190400123-7', '1732190400123-7') == 0, 'equal');
    ok(ids_strictly_increasing('1-1', '1-2', '2-0'), 'increasing');
    ok(!ids_strictly_increasing('1-1', '1-1'), 'not strictly increasing');
    is_deeply([parse_id('x-1')], [], 'malformed id');
    is_deeply([parse_id('123')], [], 'id without sequence');
}

# de-chunking
{
    my ($b, $done) = SSETest::_dechunk("3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\n\r\n");
    is($b, 'abcd', 'dechunk');
    ok($done, 'dechunk terminator');
    ($b, $done) = SSETest::_dechunk("3\r\nabc\r\n");
    ok(!$done, 'incomplete chunked body');
}

done_testing;
