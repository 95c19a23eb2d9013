#!/usr/bin/perl
# Hostile input on the stream location, as a client on the public internet
# could send it, over HTTP/1.1 and HTTP/2: malformed Last-Event-IDs (header
# and ?last_event_id=), hostile channel lists and every forbidden byte in a
# channel name, every method.  Each gets its SPEC.md answer (malformed id:
# a live-only 200 stream; bad channel: 400; other methods: 405 with Allow;
# errors as one-line JSON), and nginx keeps serving: after each batch a new
# subscriber gets a new publish, and the workers are the ones of the start.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSEHostile;
use IPC::Open2;
use IO::Select;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

# ---- the helpers are in t/lib/SSEHostile.pm

# ---- the server

my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers => 2,
    http => <<'EOH',
sse_history 10;
sse_heartbeat off;
large_client_header_buffers 4 16k;
EOH
    server_extra => <<"EOS",
        listen 127.0.0.1:$h2port http2;
        location = /arg { sse_stream \$arg_ch; }
        location ~ (?s)^/all/(.+)\$ { sse_stream \$1; }
EOS
);
my @workers = $srv->worker_pids;
is(scalar @workers, 2, 'two workers');

ok(system("$NODE --version >/dev/null 2>&1") == 0, "node is installed ($NODE)")
    or BAIL_OUT('install nodejs (make deps)');
my $h2 = h2_client();
ok(h2($h2, op => 'connect', session => 'a', port => $h2port)->{ok}, 'HTTP/2 (h2c) session');

# ======================================================================
# Last-Event-ID: malformed in every way = no id (live only, 200)

my @kept = map { $srv->publish('/pub/lid', "kept $_")->{json}{id} } 1 .. 3;
ok(ids_strictly_increasing(@kept), 'three events kept on channel lid');

# controls: a well-formed id does replay, so the cases below can fail
{
    my @ctl = (
        ['header, first id', { headers => { 'Last-Event-ID' => $kept[0] } }, '', ['kept 2', 'kept 3']],
        ['arg, first id', {}, "?last_event_id=$kept[0]", ['kept 2', 'kept 3']],
        ['header 0-0', { headers => { 'Last-Event-ID' => '0-0' } }, '', ['kept 1', 'kept 2', 'kept 3']],
    );
    for my $c (@ctl) {
        my ($name, $o, $q, $want) = @$c;
        my $s = $srv->sse_connect("/events/lid$q", %$o);
        my @ev = $s->read_events(count => scalar @$want, timeout => 5);
        is_deeply([map { $_->{data} } @ev], $want, "control: a well-formed id ($name) replays");
        $s->close;
    }
}

my $id8k = ('1' x 4096) . '-' . ('1' x 4095);
my @bad_ids = (
    '', '-', '--', '1-', '-1', '1--1', '1-1-', '-1-1', '1-1-1', '1-1-1-1',
    ('1' x 21) . '-1', '1-' . ('1' x 21), ('9' x 20) . '-1', '1-' . ('9' x 20), ('9' x 25) . '-' . ('9' x 25),
    '18446744073709551616-0', '0-18446744073709551616',          # 2^64
    '18446744073709551617-18446744073709551617', '36893488147419103232-1',
    '1 -1', '1- 1', "1\t-1", '1 - 1', '+1-1', '1-+1', '+1-+1', '1-1+',
    '0x1-0x1', '0x10-1', '1-0x1', '1e3-1', '1.5-1', '1-1.0', '1_000-1',
    '1,1', '1', '11', 'abc', 'a-b', 'null',
    "\xef\xbc\x91-\xef\xbc\x91",            # fullwidth digits
    "1\xe2\x88\x921",                        # U+2212 minus sign
    "\xd9\xa1-\xd9\xa1",                     # Arabic-Indic digits
    "1-1\xc2\xa0",                           # then a no-break space
    "\xff-1",
    $id8k,                                   # 8 KB
);
# as the query argument (nginx does not decode it: %00 stays three bytes)
my @bad_args = (
    (map { 'last_event_id=' . url_encode($_) } grep { length $_ < 100 } @bad_ids),
    'last_event_id', 'last_event_id=%00', 'last_event_id=1-1%00',
    'last_event_id=%001-1', 'last_event_id=1%00-1', 'last_event_id=1-%001',
    'last_event_id=' . $id8k,
);

my @lid_streams;
for my $v (@bad_ids) {
    my $show = length $v > 40 ? length($v) . ' bytes' : SSETest::_show($v);
    push @lid_streams, ["Last-Event-ID '$show'",
        $srv->sse_connect('/events/lid', headers => { 'Last-Event-ID' => $v })];
}
# the largest id parts there are (2^64 - 1, 20 digits, as Redis's may be):
# ids, so the stream replays what follows
my $max0 = $srv->sse_connect('/events/lid', headers => { 'Last-Event-ID' => '1-18446744073709551615' });
my $max1 = $srv->sse_connect('/events/lid', headers => { 'Last-Event-ID' => '18446744073709551615-18446744073709551615' });
# two Last-Event-ID fields: not a list header, so no one id (malformed)
my $two = $srv->sse_connect('/events/lid', headers => { 'Last-Event-ID' => [$kept[0], $kept[1]] });
for my $q (@bad_args) {
    my $show = length $q > 60 ? length($q) . ' bytes' : $q;
    push @lid_streams, ["?$show", $srv->sse_connect("/events/lid?$q")];
}

all_ok('malformed Last-Event-ID: 200 text/event-stream',
    map { [$_->[0], ($_->[1]->status == 200
                     && ($_->[1]->header('content-type') // '') =~ m{^text/event-stream})
                    ? '' : 'status ' . $_->[1]->status . ' ' . ($_->[1]{error} // '')] } @lid_streams);

my $live = $srv->publish('/pub/lid', 'live');
is($live->{status}, 201, 'a live event published');
all_ok('malformed Last-Event-ID: treated as no id (no replay, then the live event)',
    map {
        my ($name, $s) = @$_;
        my @ev = $s->status == 200 ? $s->read_events(count => 1, timeout => 5) : ();
        push @ev, $s->read_events(timeout => 0) if @ev;
        [$name, (@ev == 1 && $ev[0]{data} eq 'live') ? ''
              : 'got ' . join(', ', map { "'$_->{data}'" } @ev)];
    } @lid_streams);
$_->[1]->close for @lid_streams;
{
    my @ev = $max0->read_events(count => 4, timeout => 5);
    is(join(',', map { $_->{data} } @ev), 'kept 1,kept 2,kept 3,live',
       "Last-Event-ID '1-18446744073709551615': an id, the kept events after it, then the live one");
    @ev = $max1->read_events(count => 1, timeout => 5);
    push @ev, $max1->read_events(timeout => 0.3);
    is(join(',', map { $_->{data} } @ev), 'live',
       "Last-Event-ID '18446744073709551615-18446744073709551615': an id after all kept, so no replay, then the live one");
    $_->close for $max0, $max1;
}
{
    my @ev = $two->status == 200 ? $two->read_events(count => 1, timeout => 5) : ();
    push @ev, $two->read_events(timeout => 0) if @ev;
    is($two->status, 200, 'two Last-Event-ID headers: 200');
    is_deeply([map { $_->{data} } @ev], ['live'],
              'two Last-Event-ID headers: malformed, so no replay, then the live event');
    $two->close;
}

# the same over HTTP/2
{
    my @h2ids = ('', '-', '1--1', '-1', '18446744073709551616-0', ('1' x 21) . '-1', ('9' x 20) . '-1',
                 '1 -1', '+1-1', '0x1-1', $id8k);
    my @open;
    for my $i (0 .. $#h2ids) {
        my $r = h2($h2, op => 'open', session => 'a', sid => "lid$i", path => '/events/lid',
                   headers => { 'last-event-id' => $h2ids[$i] });
        push @open, ["HTTP/2 Last-Event-ID '" . (length $h2ids[$i] > 40 ? length($h2ids[$i]) . ' bytes'
                                                : $h2ids[$i]) . "'", $r, "lid$i"];
    }
    for my $q ('last_event_id=', 'last_event_id=-1', 'last_event_id=1%00-1', 'last_event_id=18446744073709551616-0') {
        my $sid = 'lidq' . scalar @open;
        push @open, ["HTTP/2 ?$q", h2($h2, op => 'open', session => 'a', sid => $sid,
                                          path => "/events/lid?$q"), $sid];
    }
    all_ok('HTTP/2 malformed Last-Event-ID: 200 text/event-stream',
        map { [$_->[0], ($_->[1]{status} // 0) == 200
                        && ($_->[1]{headers}{'content-type'} // '') =~ m{^text/event-stream}
                        ? '' : "status $_->[1]{status}"] } @open);
    my $l2 = $srv->publish('/pub/lid', 'live2');
    is($l2->{status}, 201, 'another live event');
    all_ok('HTTP/2 malformed Last-Event-ID: no replay, then the live event',
        map {
            my $r = h2($h2, op => 'read', sid => $_->[2], until_b64 => encode_base64("data: live2\n\n", ''),
                       timeout => 5000);
            my @data = ($r->{data} // '') =~ /^data: (.*)$/mg;
            [$_->[0], "@data" eq 'live2' ? '' : "got '@data'"];
        } @open);
    h2($h2, op => 'reset', sid => $_->[2]) for @open;
}

# a well-formed id over HTTP/2 replays (control)
{
    my $r = h2($h2, op => 'open', session => 'a', sid => 'lidok', path => '/events/lid',
               headers => { 'last-event-id' => $kept[1] });
    is($r->{status}, 200, 'HTTP/2 control: stream with a well-formed Last-Event-ID');
    my $d = h2($h2, op => 'read', sid => 'lidok', until_b64 => encode_base64("data: live2\n\n", ''));
    is_deeply([($d->{data} // '') =~ /^data: (.*)$/mg], ['kept 3', 'live', 'live2'],
              'HTTP/2 control: it replays what follows the id');
    h2($h2, op => 'reset', sid => 'lidok');
}
ok($srv->wait_stat(subscribers => 0, 5), 'every Last-Event-ID stream is gone from the hub');
still_serving($srv, 'the Last-Event-ID cases');

# ======================================================================
# channel lists

my @c17 = map { "c$_" } 1 .. 17;
my $n128 = 'n' x 128;
my @list_cases = (
    # path (after /events/), status
    ['a,,b', 400], [',a', 400], ['a,', 400], [',', 400], [',,,', 400], [',,,,,,,,,,,,,,,,,,', 400],
    ['a,%20b', 400], ['%20a', 400], ['a%20', 400], ['%20', 400], ['a%2C%2Cb', 400], ['a%2C', 400],
    ['a%09b', 400], ['a,%09,b', 400],
    [join(',', @c17), 400],                                 # 17 channels
    [join(',', map { "d$_" } 1 .. 100), 400],
    ['n' x 129, 400],
    ["$n128," . ('m' x 129), 400],
    [join(',', @c17[0 .. 15]), 200],                        # 16
    [join(',', @c17[0 .. 15], 'c1'), 200],                  # 17 named, 16 distinct
    ['dup,dup', 200], [join(',', ('dup') x 40), 200],
    [$n128, 200],
    [join(',', map { substr("$_$n128", 0, 128) } 1 .. 16), 200],   # 16 x 128 bytes
);
my @arg_cases = (
    ['ch=', 400], ['', 400], ['ch', 400], ['ch=,', 400], ['ch=a,', 400], ['ch=,a', 400],
    ['ch=a,,b', 400], ['ch=' . join(',', @c17), 400], ['ch=' . ('n' x 129), 400],
    ['ch=a,a', 200], ['ch=' . join(',', @c17[0 .. 15]), 200],
);
{
    my (@status, @json, @open);
    for my $c (@list_cases, map { ['?' . $_->[0], $_->[1]] } @arg_cases) {
        my ($p, $code) = @$c;
        my $path = $p =~ /^\?/ ? "/arg$p" : "/events/$p";
        my $show = length $p > 60 ? substr($p, 0, 30) . '...(' . length($p) . ' bytes)' : $p;
        if ($code == 200) {
            my $s = $srv->sse_connect($path);
            push @status, [$show, $s->status == 200 ? '' : 'status ' . $s->status];
            push @open, $s;
        } else {
            my $r = $srv->http('GET', $path);
            push @status, [$show, $r->{status} == $code ? '' : "status $r->{status}"];
            push @json, [$show, json_error_problem($r, $code)];
        }
    }
    all_ok('channel lists: the SPEC status (400, or 200 where duplicates collapse to <= 16)', @status);
    all_ok('channel lists: every 400 is one-line JSON', @json);
    $_->close for @open;
}

# duplicates collapse: one subscriber, each event once
{
    my $s = $srv->sse_connect('/events/dup,dup,dup');
    is($s->status, 200, 'dup,dup,dup: 200');
    is($srv->http('GET', '/pub/dup')->{json}{subscribers}, 1, 'dup,dup,dup: one subscriber of dup');
    $srv->publish('/pub/dup', 'once');
    my @ev = $s->read_events(count => 1, timeout => 5);
    push @ev, $s->read_events(timeout => 0.5);
    is_deeply([map { $_->{data} } @ev], ['once'], 'dup,dup,dup: the event arrives once');
    $s->close;
}

# every byte that is not A-Z a-z 0-9 _ - . : @ /, percent-encoded in the
# path or the argument, and raw where a request line may carry it (the
# comma is the list separator: see above)
my $channels0 = $srv->stat('channels');
{
    my @forbidden = grep { chr($_) !~ m{[A-Za-z0-9_\-.:\@/,]} } 0 .. 255;
    is(scalar @forbidden, 187, '187 forbidden bytes besides the comma');
    my (@status, @json);
    my @cases = (
        (map { ['%-encoded in the path ' . hexb($_), sprintf('/all/a%%%02Xb', $_)] } @forbidden),
        (map { ['raw in the path ' . hexb($_), '/all/a' . chr($_) . 'b'] } 0x80 .. 0xFF),
        (map { ['%-encoded in ?ch= ' . hexb($_), sprintf('/arg?ch=a%%%02Xb', $_)] } @forbidden),
        (map { ['raw in ?ch= ' . hexb($_), '/arg?ch=a' . chr($_) . 'b'] }
             grep { $_ != 0x26 && $_ != 0x23 } grep { $_ > 0x20 && $_ != 0x7f } @forbidden),
    );
    my $nul;
    for my $c (@cases) {
        my $r = $srv->http('GET', $c->[1]);
        push @status, [$c->[0], $r->{status} == 400 ? '' : "status $r->{status}"];
        # %00 in the path: nginx itself refuses the URI (see below)
        if ($c->[1] eq '/all/a%00b') { $nul = $r; next }
        push @json, [$c->[0], json_error_problem($r, 400)];
    }
    all_ok('forbidden bytes in a stream channel name: 400', @status);
    all_ok('forbidden bytes in a stream channel name: one-line JSON error', @json);
    # nginx refuses such a URI itself, before any location (its own page)
    is($nul->{status}, 400, '%00 in a stream path: 400 from nginx');
}
ok($srv->wait_stat(subscribers => 0, 5), 'no rejected request stayed subscribed');
is($srv->stat('channels'), $channels0, 'no rejected request created a channel')
    or diag(SSETest::json_encode($srv->status));

# over HTTP/2
{
    my (@p);
    for my $path ('/events/a%20b', '/events/a,,b', '/events/' . join(',', @c17), '/events/' . ('n' x 129),
                  '/all/a%22b', '/all/a%0Ab', '/arg?ch=', '/arg?ch=a%2Cb') {
        push @p, ["HTTP/2 $path", json_error_problem(h2($h2, op => 'request', session => 'a', path => $path), 400)];
    }
    all_ok('HTTP/2: bad channel lists and names: 400 with one-line JSON', @p);
}
still_serving($srv, 'the channel cases');

# ======================================================================
# methods

{
    my (@m405, @allow, @json);
    for my $m (qw(POST PUT DELETE PATCH OPTIONS PROPFIND FROBNICATE)) {
        my $r = $srv->http($m, '/events/meth', ($m =~ /^(POST|PUT|PATCH)$/ ? (body => 'x') : ()));
        push @m405, [$m, $r->{status} == 405 ? '' : "status $r->{status}"];
        push @allow, [$m, ($r->{headers}{allow} // '') eq 'GET, HEAD' ? '' : "Allow '" . ($r->{headers}{allow} // '') . "'"];
        push @json, [$m, json_error_problem($r, 405)];
    }
    for my $m (qw(POST DELETE PATCH OPTIONS PROPFIND FROBNICATE)) {
        my $r = h2($h2, op => 'request', session => 'a', method => $m, path => '/events/meth',
                   ($m =~ /^(POST|PATCH)$/ ? (body_b64 => encode_base64('x', '')) : ()));
        push @m405, ["HTTP/2 $m", ($r->{status} // 0) == 405 ? '' : "status $r->{status}"];
        push @allow, ["HTTP/2 $m", ($r->{headers}{allow} // '') eq 'GET, HEAD' ? '' : "Allow '" . ($r->{headers}{allow} // '') . "'"];
        push @json, ["HTTP/2 $m", json_error_problem($r, 405)];
    }
    all_ok('other methods on a stream location: 405', @m405);
    all_ok('other methods on a stream location: Allow: GET, HEAD', @allow);
    all_ok('other methods on a stream location: one-line JSON error', @json);

    # TRACE and CONNECT are refused by nginx itself before any location
    # runs (its own page: README, "Behaviour where the spec is silent")
    for my $m (qw(TRACE CONNECT)) {
        my $r = $srv->http($m, '/events/meth');
        is($r->{status}, 405, "$m on a stream location: 405 from nginx");
    }
    my $t2 = h2($h2, op => 'request', session => 'a', method => 'TRACE', path => '/events/meth');
    is($t2->{status}, 405, 'HTTP/2 TRACE on a stream location: 405 from nginx');

    my $h = $srv->http('HEAD', '/events/meth');
    is($h->{status}, 200, 'HEAD on a stream: 200');
    like($h->{headers}{'content-type'} // '', qr{^text/event-stream}, 'HEAD on a stream: the stream headers');
    is($h->{body}, '', 'HEAD on a stream: no body');
    my $h2h = h2($h2, op => 'request', session => 'a', method => 'HEAD', path => '/events/meth');
    is($h2h->{status}, 200, 'HTTP/2 HEAD on a stream: 200');
    is($h2h->{body}, '', 'HTTP/2 HEAD on a stream: no body');
    is($srv->stat('subscribers'), 0, 'HEAD subscribed nobody');
}
still_serving($srv, 'the method cases');

is(h2($h2, op => 'session_state', session => 'a')->{closed}, JSONBool::FALSE(),
   'the HTTP/2 session survived all of it');
h2_end($h2);
is_deeply([$srv->worker_pids], \@workers, 'the same workers as at the start (none crashed)');
$srv->stop;
done_testing;
