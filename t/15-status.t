#!/usr/bin/perl
# sse_status: JSON keys and values, hub-wide counters, Prometheus format.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(workers => 2, listen_opts => "reuseport");

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
    ok($j->{zone_bytes_total} > 16 * 1024 * 1024 && $j->{zone_bytes_total} <= 32 * 1024 * 1024,
       "default zone is sse:32m (total $j->{zone_bytes_total})");
    ok($j->{zone_bytes_used} > 0 && $j->{zone_bytes_used} < $j->{zone_bytes_total},
       "zone_bytes_used $j->{zone_bytes_used} within the zone");
}

# --- subscribers and counters, hub-wide
my @a = $srv->sse_connect_many(10, '/events/st1');
my @b = $srv->sse_connect_many(5, '/events/st2');
is(scalar(grep { $_->status == 200 } @a, @b), 15, '15 subscribers');
my %sw;
$sw{ $_->worker }++ for @a, @b;
ok(keys %sw > 1, 'subscribers on both workers') or diag(join ' ', %sw);
ok($srv->wait_stat(subscribers => 15, 3), 'status: 15 subscribers');

my $used0 = $srv->stat('zone_bytes_used');
my @ids;
push @ids, $srv->publish('/pub/st1', "st1 $_")->{json}{id} for 1 .. 3;
push @ids, $srv->publish('/pub/st2', "st2 $_")->{json}{id} for 1 .. 2;
for my $s (@a) { $s->read_events(count => 3, timeout => 3) }
for my $s (@b) { $s->read_events(count => 2, timeout => 3) }

my %seen_by;
for my $r ($srv->http_parallel(16, 'GET', '/status')) {
    my $j = $r->{json} || {};
    $seen_by{ $r->{worker} // '?' } = $j;
}
ok(keys %seen_by > 1, 'status answered by more than one worker');
for my $w (sort keys %seen_by) {
    my $j = $seen_by{$w};
    is($j->{subscribers}, 15, "worker $w: subscribers 15");
    is($j->{channels}, 2, "worker $w: channels 2");
    is($j->{events_published}, 5, "worker $w: events_published 5");
    is($j->{events_delivered}, 10 * 3 + 5 * 2, "worker $w: events_delivered 40");
    is($j->{events_kept}, 5, "worker $w: events_kept 5");
    ok($j->{zone_bytes_used} >= $used0 && $j->{zone_bytes_used} < $j->{zone_bytes_total},
       "worker $w: zone_bytes_used plausible");
}

# --- Prometheus
{
    my $json = $srv->status;
    my $r = $srv->http('GET', '/status?format=prometheus');
    is($r->{status}, 200, 'prometheus: 200');
    like($r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4(;|$)},
         'prometheus: Content-Type text/plain; version=0.0.4');
    my (%v, %type, @badline);
    for my $l (split /\n/, $r->{body}) {
        next if $l eq '';
        if ($l =~ /^# TYPE (\S+) (counter|gauge|untyped|histogram|summary)$/) { $type{$1} = $2; next }
        next if $l =~ /^# HELP \S+ /;
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
        nginx_sse_subscribers             => 'subscribers',
        nginx_sse_channels                => 'channels',
        nginx_sse_events_published_total  => 'events_published',
        nginx_sse_events_delivered_total  => 'events_delivered',
        nginx_sse_events_kept             => 'events_kept',
        nginx_sse_slow_closed_total       => 'slow_closed',
        nginx_sse_history_evicted_total   => 'history_evicted',
        nginx_sse_zone_bytes_used         => 'zone_bytes_used',
        nginx_sse_zone_bytes_total        => 'zone_bytes_total',
    );
    for my $m (sort keys %want) {
        ok(exists $v{$m}, "prometheus: $m present");
        if ($m eq 'nginx_sse_zone_bytes_used') {
            ok(defined $v{$m} && $v{$m} > 0, "prometheus: $m > 0");
        } else {
            is($v{$m}, $json->{ $want{$m} }, "prometheus: $m agrees with JSON $want{$m}");
        }
        if ($type{$m}) {
            is($type{$m}, ($m =~ /_(published|delivered|closed|evicted)_total$/ ? 'counter' : 'gauge'),
               "prometheus: $m TYPE");
        }
    }
    is($v{nginx_sse_redis_connected}, 0, 'prometheus: nginx_sse_redis_connected 0');
}

# --- subscribers leave
$_->close for @a, @b;
ok($srv->wait_stat(subscribers => 0, 3), 'status: 0 subscribers after they left');
is($srv->stat('channels'), 2, 'channels with kept events remain');
is($srv->http('DELETE', '/pub/st1')->{status}, 200, 'DELETE st1');
is($srv->stat('channels'), 1, 'channels: 1 after DELETE');
is($srv->stat('events_kept'), 2, 'events_kept: 2 after DELETE');
is($srv->stat('events_published'), 5, 'events_published is a counter: still 5');
$srv->stop;

# --- sse_zone sets the zone
{
    my $z = start_nginx(workers => 1, http => "sse_zone hub:8m;\n");
    my $j = $z->status;
    ok($j->{zone_bytes_total} > 4 * 1024 * 1024 && $j->{zone_bytes_total} <= 8 * 1024 * 1024,
       "sse_zone hub:8m: zone_bytes_total $j->{zone_bytes_total}");
    is($j->{workers}, 1, 'workers: 1');
    $z->stop;
}

done_testing;
