#!/usr/bin/perl
# sse_status: JSON keys and values, hub-wide counters, Prometheus format.
use strict;
use warnings;
use Test::More;
use File::Temp ();
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

# small socket buffers on nginx's side: the slow subscriber below owes
# most of a big event at once
my $srv = start_nginx(
    workers      => 2,
    listen_opts  => 'reuseport sndbuf=4096',
    server_extra => <<'EOS',
        location ~ ^/slow/(.+)$ { sse_stream $1; sse_max_pending 1k; }
        location ~ ^/pub2/(.+)$ { sse_publish $1; sse_history 2; }
        location ~ ^/pubbig/(.+)$ {
            sse_publish $1;
            client_max_body_size 1m;
            sse_max_message_size 1m;
        }
EOS
);

my @KEYS = qw(subscribers channels events_published events_delivered events_kept
              slow_closed history_evicted zone_bytes_used zone_bytes_total workers redis);
my @NUM = grep { $_ ne 'redis' } @KEYS;

# --- a fresh hub
{
    my $r = $srv->http('GET', '/status');
    is($r->{status}, 200, 'GET /status: 200');
    like($r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type');
    like($r->{body}, qr/\A\{[^\n]*\}\n?\z/, 'one-line JSON object');
    my $j = $r->{json} || {};
    for my $k (@KEYS) { ok(exists $j->{$k}, "key $k present") }
    for my $k (@NUM) {
        like($r->{body}, qr/"$k":\d+[,}]/, "$k is a JSON integer");
    }
    is($j->{redis}, 'off', 'redis: "off" without sse_redis');
    is($j->{workers}, 2, 'workers: 2');
    for my $k (qw(subscribers channels events_published events_delivered events_kept
                  slow_closed history_evicted)) {
        is($j->{$k}, 0, "fresh hub: $k is 0");
    }
    is($j->{zone_bytes_total}, 32 * 1024 * 1024, 'default zone is sse:32m: zone_bytes_total 33554432');
    ok($j->{zone_bytes_used} > 0 && $j->{zone_bytes_used} < $j->{zone_bytes_total},
       "zone_bytes_used $j->{zone_bytes_used} within the zone");
}

# --- subscribers and counters, hub-wide; streams of one channel and of two
my @a  = $srv->sse_connect_many(10, '/events/st1');
my @b  = $srv->sse_connect_many(5, '/events/st2');
my @ab = $srv->sse_connect_many(4, '/events/st1,st2');
is(scalar(grep { $_->status == 200 } @a, @b, @ab), 19, '19 subscribers');
my %sw;
$sw{ $_->worker }++ for @a, @b, @ab;
ok(keys %sw > 1, 'subscribers on both workers') or diag(join ' ', %sw);
ok($srv->wait_stat(subscribers => 19, 3), 'status: 19 subscribers');

my $used0 = $srv->stat('zone_bytes_used');
my @ids;
push @ids, $srv->publish('/pub/st1', "st1 $_")->{json}{id} for 1 .. 3;
push @ids, $srv->publish('/pub/st2', "st2 $_")->{json}{id} for 1 .. 2;
my $got = 0;
$got += $_->read_events(count => 3, timeout => 3) for @a;
$got += $_->read_events(count => 2, timeout => 3) for @b;
$got += $_->read_events(count => 5, timeout => 3) for @ab;
is($got, 10 * 3 + 5 * 2 + 4 * 5, 'the subscribers got their 60 events');

# each event counts once per subscriber it reaches: a stream of st1,st2
# counts the events of both
my %seen_by;
for my $r ($srv->http_parallel(16, 'GET', '/status')) {
    my $j = $r->{json} || {};
    $seen_by{ $r->{worker} // '?' } = $j;
}
ok(keys %seen_by > 1, 'status answered by more than one worker');
for my $w (sort keys %seen_by) {
    my $j = $seen_by{$w};
    is($j->{subscribers}, 19, "worker $w: subscribers 19");
    is($j->{channels}, 2, "worker $w: channels 2");
    is($j->{events_published}, 5, "worker $w: events_published 5");
    is($j->{events_delivered}, 10 * 3 + 5 * 2 + 4 * (3 + 2),
       "worker $w: events_delivered 60 (10 x 3 + 5 x 2 + 4 x 5)");
    is($j->{events_kept}, 5, "worker $w: events_kept 5");
    is($j->{slow_closed}, 0, "worker $w: slow_closed 0");
    is($j->{history_evicted}, 0, "worker $w: history_evicted 0");
    # the zone is used in pages: 5 small events may fit in the pages it had
    ok($j->{zone_bytes_used} >= $used0 && $j->{zone_bytes_used} < $j->{zone_bytes_total},
       "worker $w: zone_bytes_used $j->{zone_bytes_used} (was $used0) within the zone");
}

# --- every counter and gauge non-zero and distinct from the others
# history 2 on st3: 5 published, 3 evicted
push @ids, $srv->publish('/pub2/st3', "st3 $_")->{json}{id} for 1 .. 5;
is($srv->http('GET', '/pub2/st3')->{json}{events}, 2, 'st3 keeps 2 events');
# a subscriber that does not read, with sse_max_pending 1k, and one big event
{
    my $slow = $srv->sse_connect('/slow/st4', rcvbuf => 4096);
    is($slow->status, 200, 'a slow subscriber (small receive buffer, not reading)');
    ok($srv->wait_stat(subscribers => 20, 3), 'status: 20 subscribers');
    my $r = $srv->publish('/pubbig/st4', 'B' x (600 * 1024));
    is($r->{status}, 201, 'a 600 kB event for it');
    is($r->{json}{subscribers}, 1, '...published to its one subscriber');
    ok($srv->wait_stat(slow_closed => 1, 5), 'status: slow_closed 1');
    ok($srv->wait_stat(subscribers => 19, 5), 'status: back to 19 subscribers');
    ok($slow->is_closed(10), 'the slow stream is closed');
}
# the event handed to the slow subscriber counts as delivered
my %expect = (
    subscribers      => 19,
    channels         => 4,
    events_published => 11,
    events_delivered => 61,
    events_kept      => 8,
    slow_closed      => 1,
    history_evicted  => 3,
    zone_bytes_total => 32 * 1024 * 1024,
    workers          => 2,
);
my $json = $srv->status;
for my $k (sort keys %expect) {
    is($json->{$k}, $expect{$k}, "status: $k $expect{$k}");
}
ok($json->{zone_bytes_used} > $used0 + 600 * 1024 && $json->{zone_bytes_used} < $json->{zone_bytes_total},
   "status: zone_bytes_used $json->{zone_bytes_used} holds the 600 kB event, within the zone");
{
    my %v = map { $_ => $json->{$_} } keys %expect, 'zone_bytes_used';
    my %by_value;
    push @{ $by_value{ $v{$_} } }, $_ for sort keys %v;
    my @same = grep { @{ $by_value{$_} } > 1 } keys %by_value;
    is(scalar @same, 0, 'every number in the status is non-zero and distinct from the others')
        or diag(join '; ', map { "$_: @{ $by_value{$_} }" } @same);
    ok(!grep({ !$v{$_} } keys %v), 'none is 0');
}

# --- Prometheus: each metric has its HELP and TYPE lines and the JSON value
{
    my $r = $srv->http('GET', '/status?format=prometheus');
    is($r->{status}, 200, 'prometheus: 200');
    like($r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4(;|$)},
         'prometheus: Content-Type text/plain; version=0.0.4');
    my (%v, %type, %help, @badline);
    for my $l (split /\n/, $r->{body}) {
        next if $l eq '';
        if ($l =~ /^# TYPE (\S+) (counter|gauge|untyped|histogram|summary)$/) { $type{$1} = $2; next }
        if ($l =~ /^# HELP (\S+) \S/) { $help{$1} = 1; next }
        if ($l =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?\d+)?$/) {
            $v{$1} = $3;
            next;
        }
        push @badline, $l;
    }
    is(scalar @badline, 0, 'prometheus: every line is valid exposition format')
        or diag(join "\n", @badline);
    ok(!grep({ !/^nginx_sse_/ } keys %v), 'prometheus: every metric starts with nginx_sse_')
        or diag(join ' ', keys %v);
    my %want = (
        nginx_sse_subscribers             => ['subscribers', 'gauge'],
        nginx_sse_channels                => ['channels', 'gauge'],
        nginx_sse_events_published_total  => ['events_published', 'counter'],
        nginx_sse_events_delivered_total  => ['events_delivered', 'counter'],
        nginx_sse_events_kept             => ['events_kept', 'gauge'],
        nginx_sse_slow_closed_total       => ['slow_closed', 'counter'],
        nginx_sse_history_evicted_total   => ['history_evicted', 'counter'],
        nginx_sse_zone_bytes_used         => ['zone_bytes_used', 'gauge'],
        nginx_sse_zone_bytes_total        => ['zone_bytes_total', 'gauge'],
        nginx_sse_workers                 => ['workers', 'gauge'],
        nginx_sse_redis_connected         => [undef, 'gauge'],
        nginx_sse_redis_logged_total      => ['redis_logged', 'counter'],
        nginx_sse_redis_read_total        => ['redis_read', 'counter'],
        nginx_sse_redis_reconnects_total  => ['redis_reconnects', 'counter'],
        nginx_sse_redis_ingress           => [undef, 'gauge'],
    );
    is_deeply([sort keys %v], [sort keys %want], 'prometheus: exactly the metrics of the README');
    for my $m (sort keys %want) {
        my ($k, $t) = @{ $want{$m} };
        if (defined $k) {
            is($v{$m}, $json->{$k}, "prometheus: $m agrees with JSON $k ($json->{$k})");
            is($v{$m}, $expect{$k}, "prometheus: $m is $expect{$k}") if exists $expect{$k};
        } else {
            is($v{$m}, 0, "prometheus: $m 0 (no sse_redis)");
        }
        is($type{$m}, $t, "prometheus: $m has '# TYPE $m $t'");
        # SPEC.md: "each metric has # HELP and # TYPE lines"
        ok($help{$m}, "prometheus: $m has a '# HELP $m ...' line");
    }
    is_deeply($srv->status, $json, 'JSON after the Prometheus answer: unchanged');

    # and read by Prometheus's own parser (Debian's python3-prometheus-client):
    # what a scraper would see, family by family (/usr/bin/python3: Debian's,
    # where the package is, whatever python3 comes first in PATH)
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    open(my $fh, '>', "$dir/body") or die "$dir/body: $!";
    print $fh $r->{body};
    close $fh;
    my $py = <<'PY';
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in f.samples:
        print(f.type, s.name, repr(s.value), f.documentation != "")
PY
    my @parsed = `/usr/bin/python3 -c '$py' '$dir/body' 2>&1`;
    is($?, 0, 'prometheus_client parses the answer') or diag(@parsed);
    my (%pv, %pt, %ph);
    for (@parsed) {
        my ($t, $name, $val, $doc) = split ' ';
        $pv{$name} = $val + 0;
        $pt{$name} = $t;
        $ph{$name} = $doc;
    }
    is_deeply([sort keys %pv], [sort keys %want], 'prometheus_client: exactly the metrics of the README');
    for my $m (sort keys %want) {
        is($pv{$m}, $v{$m} + 0, "prometheus_client: $m is $v{$m}");
        is($pt{$m}, $want{$m}[1], "prometheus_client: $m is a $want{$m}[1]");
        is($ph{$m}, 'True', "prometheus_client: $m has its help text");
    }
}

# --- subscribers leave
$_->close for @a, @b, @ab;
ok($srv->wait_stat(subscribers => 0, 3), 'status: 0 subscribers after they left');
is($srv->stat('channels'), 4, 'channels with kept events remain: 4');
is($srv->http('DELETE', '/pub/st1')->{status}, 200, 'DELETE st1');
is($srv->stat('channels'), 3, 'channels: 3 after DELETE');
is($srv->stat('events_kept'), 5, 'events_kept: 5 after DELETE (8 - 3)');
is($srv->stat('events_published'), 11, 'events_published is a counter: still 11');
is($srv->stat('history_evicted'), 3, 'history_evicted: a DELETE is not an eviction');
$srv->stop;

# --- sse_zone sets the zone
{
    my $z = start_nginx(workers => 1, http => "sse_zone hub:8m;\n");
    my $j = $z->status;
    is($j->{zone_bytes_total}, 8 * 1024 * 1024, 'sse_zone hub:8m: zone_bytes_total 8388608');
    is($j->{workers}, 1, 'workers: 1');
    $z->stop;
}

done_testing;
