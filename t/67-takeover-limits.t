#!/usr/bin/perl
# What nginx's own modules do to a request applies to an event stream from
# its first event to its last: limit_conn keeps counting an open stream (a
# second one from the same address gets 503 however long the first has been
# open, and a new one is admitted once it closes), sub_filter rewrites live
# events as it rewrites the replay, limit_rate paces live events.  A stream
# without any of them works as before.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 2,
    http => <<'EOH',
    limit_conn_zone $binary_remote_addr zone=perip:1m;
    client_body_buffer_size 64k;
EOH
    server_extra => <<'EOS',
        location ~ ^/lc/(.+)$ { sse_stream $1; limit_conn perip 1; sse_heartbeat 1s; }
        location ~ ^/sf/(.+)$ {
            sse_stream $1;
            sub_filter 'foo' 'bar';
            sub_filter_types text/event-stream;
            sub_filter_once off;
        }
        location ~ ^/lr/(.+)$ { sse_stream $1; limit_rate 2k; sse_heartbeat off; }
        location ~ ^/plain/(.+)$ { sse_stream $1; sse_heartbeat 1s; }
EOS
);

sub datas { map { $_->{data} } @_ }

# ---------------------------------------------------------------- limit_conn

{
    my $s1 = $srv->sse_connect('/lc/lc');
    is($s1->status, 200, 'limit_conn perip 1: the first stream from 127.0.0.1 is admitted');

    my $s2 = $srv->sse_connect('/lc/lc', timeout => 5);
    check_json_error({ status => $s2->status, headers => $s2->headers, body => $s2->body },
                     503, 'a second stream from the same address at once');
    $s2->close;

    my $r = $srv->publish('/pub/lc', 'one');
    is($r->{status}, 201, 'publish to the limited channel');
    my @ev = $s1->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['one'], 'the first stream gets the event');

    sleep 2;
    my $s3 = $srv->sse_connect('/lc/lc', timeout => 5);
    check_json_error({ status => $s3->status, headers => $s3->headers, body => $s3->body },
                     503, 'a second stream 2 s later, after events were delivered to the first');
    $s3->close;

    # several more, spread over both workers: none is admitted
    my @more = $srv->sse_connect_many(4, '/lc/lc', timeout => 5);
    is(scalar(grep { $_->status == 503 } @more), 4,
       '4 more streams at once: all 503 (' . join(',', map { $_->status } @more) . ')');
    $_->close for @more;

    $r = $srv->publish('/pub/lc', 'two');
    @ev = $s1->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['two'], 'the first stream still gets events');
    ok($s1->wait_for(qr/^:/m, 5), 'and its heartbeat');
    ok(!$s1->is_closed(0), 'the first stream is still open');

    $s1->close;
    my $s4;
    ok(wait_until(sub {
        $s4->close if $s4;
        $s4 = $srv->sse_connect('/lc/lc', timeout => 5);
        $s4->status == 200;
    }, 5, 0.2), 'once the first stream closes, a new one is admitted')
        or diag('last status: ' . $s4->status);
    $r = $srv->publish('/pub/lc', 'three');
    @ev = $s4->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['three'], 'and gets events');

    my $s5 = $srv->sse_connect('/lc/lc', timeout => 5);
    is($s5->status, 503, 'while it is open, another one is refused again');
    $s5->close;
    $s4->close;
}

# ---------------------------------------------------------------- sub_filter

{
    my @kept;
    for my $d ('foo replay 1', "a foo b foo") {
        my $r = $srv->publish('/pub/sf', $d);
        is($r->{status}, 201, "publish '$d' before the stream opens");
        push @kept, $r->{json}{id};
    }
    my $s = $srv->sse_connect('/sf/sf', headers => { 'Last-Event-ID' => '0-0' });
    is($s->status, 200, 'a stream with sub_filter foo -> bar');
    my @ev = $s->read_events(count => 2, timeout => 5);
    is_deeply([datas(@ev)], ['bar replay 1', 'a bar b bar'], 'the replay has foo replaced by bar');
    is_deeply([map { $_->{id} } @ev], \@kept, '...with the events\' ids');

    ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');
    sleep 0.5;          # the stream has been open a while
    my @live = ('foo live 1', 'foofoo live 2', "x foo\nfoo y", 'no match here');
    my @ids;
    for my $d (@live) {
        my $r = $srv->publish('/pub/sf', $d);
        is($r->{status}, 201, 'publish a live event');
        push @ids, $r->{json}{id};
    }
    @ev = $s->read_events(count => scalar(@live), timeout => 5);
    is_deeply([datas(@ev)], ['bar live 1', 'barbar live 2', "x bar\nbar y", 'no match here'],
              'live events have foo replaced by bar too');
    is_deeply([map { $_->{id} } @ev], \@ids, '...in order, with their ids');

    sleep 2;
    my $r = $srv->publish('/pub/sf', 'later foo');
    @ev = $s->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['later bar'], 'and a live event 2 s later');
    $s->close;
}

# ---------------------------------------------------------------- limit_rate

{
    my $s = $srv->sse_connect('/lr/lr');
    is($s->status, 200, 'a stream with limit_rate 2k');
    my $t0 = $s->{head_time};
    ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');

    # 10 x 2 kB = 20 kB at once: nginx lets 2 kB a second through (and
    # about 2 kB more for the second the request started in), so the last
    # one cannot arrive before ~8 s after the stream opened
    my @ids;
    for my $i (1 .. 10) {
        my $r = $srv->publish('/pub/lr', sprintf('%02d ', $i) . ('r' x 2000));
        is($r->{status}, 201, "publish 2 kB #$i") unless $r->{status} == 201;
        push @ids, $r->{json}{id};
    }
    my $tp = time();
    my @ev = $s->read_events(count => 10, timeout => 40);
    my $t1 = time();
    is(scalar(@ev), 10, 'all 10 events arrive');
    is_deeply([map { $_->{id} } @ev], \@ids, '...in order, whole')
        and ok(!grep({ length($_->{data}) != 2003 } @ev), '...each of 2003 bytes');
    my $took = $t1 - $t0;
    diag(sprintf '20 kB took %.1fs from the stream\'s start (%.1fs after the publishes)',
         $took, $t1 - $tp);
    cmp_ok($took, '>=', 5, 'limit_rate 2k: the 20 kB burst took at least 5 s (no faster than the rate allows)');
    $s->close;
}

# ---------------------------------------------------------------- plain

{
    my $s = $srv->sse_connect('/plain/pl');
    is($s->status, 200, 'a stream without limits or filters');
    ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');
    my $r = $srv->publish('/pub/pl', 'plain foo');
    my @ev = $s->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['plain foo'], 'its event arrives, unchanged');
    is($ev[0]{id}, $r->{json}{id}, '...with its id') if @ev;
    $s->take_raw;
    ok($s->wait_new(qr/^:/m, 5), 'its heartbeat arrives');
    $r = $srv->publish('/pub/pl', 'after the heartbeat');
    @ev = $s->read_events(count => 1, timeout => 5);
    is_deeply([datas(@ev)], ['after the heartbeat'], 'and events after it');
    my @open = $srv->sse_connect_many(3, '/plain/pl');
    is(scalar(grep { $_->status == 200 } @open), 3, 'several streams from one address are fine without limit_conn');
    $_->close for @open, $s;
}

$srv->stop;
done_testing;
