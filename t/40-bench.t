#!/usr/bin/perl
# The benchmark, small: bench/run.pl --quick runs every scenario against our
# module and against nchan (scenario 6: our Redis mode, two nodes on a
# redis-server of its own, against our local mode; scenario 7: HTTP/2 over
# TLS with bench/h2bench), so the load clients, the configs and the table
# never rot.  Our module must deliver every event
# exactly once, in order; the figures themselves are for make bench, not
# asserted here.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use JSON::PP;

my $repo = repo_dir();

# what every run of ours must show: each event delivered once, in order,
# to every subscriber, and its latency measured for each delivery
sub delivered_once {
    my ($r, $what) = @_;
    is($r->{unique}, $r->{expected}, "$what: every event delivered");
    is($r->{missing}, 0, "$what: none missing");
    is($r->{duplicated}, 0, "$what: none duplicated");
    is($r->{out_of_order}, 0, "$what: none out of order");
    is($r->{closed_early}, 0, "$what: no stream closed");
    ok(($r->{latency_us}{count} // 0) == $r->{deliveries}
       && $r->{latency_us}{p50} > 0 && $r->{latency_us}{max} >= $r->{latency_us}{p99},
       "$what: latency figures");
}

my $build = qx{make -s -C $repo/bench client 2>&1};
is($?, 0, 'the load client builds') or diag($build);
ok(-x "$repo/bench/ssebench", 'bench/ssebench is there');
ok(-x "$repo/bench/h2bench", 'bench/h2bench is there');

my $out = "$repo/build/bench-test";
my $text = qx{$repo/bench/run.pl --quick --out $out 2>&1};
is($? >> 8, 0, 'bench/run.pl --quick exits 0') or diag($text);

my ($file) = $text =~ /^raw figures: (\S+)$/m;
ok($file && -f $file, 'the raw figures are written') or diag($text);
my $report = eval { local $/; open my $fh, '<', $file or die; decode_json(<$fh>) } || {};

for my $id (1 .. 5) {
    like($text, qr/^### Scenario $id: /m, "the table has scenario $id");
    my $ours = $report->{results}{$id}{sse} || {};
    my $them = $report->{results}{$id}{nchan} || {};
    my $p = $ours->{params} || {};

    ok(!$ours->{fatal}, "scenario $id: ours ran") or diag($ours->{fatal});
    ok(!$ours->{error_log}, "scenario $id: no alert in our error.log")
        or diag(join "\n", @{ $ours->{error_log} });
    is($ours->{connected}, $p->{subs}, "scenario $id: every subscriber connected");
    is($ours->{warmup_missing}, 0, "scenario $id: every subscriber got the warm-up event");
    # subscriber i is on channel i % C, event k goes to channel k % C
    ok($ours->{expected} && $ours->{expected} == $p->{subs} * $p->{events} / $p->{channels},
       "scenario $id: $p->{subs} subscribers x $p->{events} events / $p->{channels} channels expected")
        or diag("expected $ours->{expected}");
    delivered_once($ours, "scenario $id");
    ok(defined $ours->{server_cpu_s} && defined $ours->{server_rss_kb}{idle},
       "scenario $id: server CPU and memory sampled");

    # nchan is the yardstick, not under test: its own failures are shown
    diag("scenario $id: nchan: $them->{fatal}") if $them->{fatal};
    is($them->{connected}, $p->{subs}, "scenario $id: nchan's subscribers connected");
    ok(defined $them->{deliveries_per_s}, "scenario $id: nchan's figures are there");
}

like($text, qr/\| deliveries\/s \| \d+ \| \d+ \| [\d.]+ \|/, 'the table compares deliveries/s');

# ---- scenario 6: Redis mode (2 nodes) against local mode (1 node)
{
    like($text, qr/^### Scenario 6: /m, 'the table has scenario 6');
    my $s6 = $report->{results}{6}{sse} || {};
    my $p = $s6->{params} || {};
    my $nodes = $p->{nodes} // 0;
    ok(!$s6->{fatal}, 'scenario 6 ran') or diag($s6->{fatal});
    ok(!$s6->{error_log}, 'scenario 6: no alert or error in the nodes\' error.log')
        or diag(join "\n", @{ $s6->{error_log} });
    is($nodes, 2, 'scenario 6: two Redis nodes');

    # what each node must have logged and delivered: POST b of a run goes
    # to node b % n (the warm-up: one POST per channel, the same way), and
    # subscriber i is on node i % n
    my (@logged, @delivered);
    for my $run (@{ $p->{runs} || [] }) {
        my $key = $run->{key};
        my $subs = $run->{subs} // $p->{subs};
        for my $mode ('local', 'redis') {
            my $r = $s6->{runs}{$key}{$mode} || {};
            my $what = "scenario 6, $key, $mode";
            ok(!$r->{fatal}, "$what: ran") or diag($r->{fatal});
            is($r->{connected}, $subs, "$what: every subscriber connected");
            is($r->{warmup_missing}, 0, "$what: every subscriber got the warm-up event");
            is(scalar @{ $r->{ports} || [] }, $mode eq 'redis' ? $nodes : 1,
               "$what: subscribers and POSTs on " . ($mode eq 'redis' ? "$nodes ports" : 'one port'));
            ok($r->{expected} && $r->{expected} == $subs * $run->{events},
               "$what: $subs subscribers x $run->{events} events expected")
                or diag('expected ' . ($r->{expected} // 'none'));
            delivered_once($r, $what);
            is($r->{publish_errors}, 0, "$what: every POST answered 2xx");
            # the nodes' and redis-server's CPU, each apart
            my @srv = @{ $r->{servers} || [] };
            is(scalar @srv, $mode eq 'redis' ? $nodes + 1 : 1, "$what: every server sampled");
            ok(!grep({ !defined $_->{cpu_s} || !@{ $_->{pids_seen} || [] } } @srv),
               "$what: each server's CPU and pids");
            next unless $mode eq 'redis';
            for my $b (0 .. $p->{channels} - 1, 0 .. $run->{events} - 1) {
                $logged[$b % $nodes]++;
            }
            for my $i (0 .. $subs - 1) {
                $delivered[$i % $nodes] += $run->{events} + 1;     # and the warm-up
            }
        }
    }

    # the nodes' own counters: each took its share of the POSTs, read every
    # entry of the log, and delivered to its own share of the subscribers
    my $st = $s6->{status} || {};
    is($st->{local}{redis}, 'off', 'scenario 6: the local node has no Redis');
    my $total = 0;
    $total += $_ // 0 for @logged;
    for my $n (1 .. $nodes) {
        my $s = $st->{"node$n"} || {};
        is($s->{redis}, 'up', "scenario 6: node $n: its link to Redis is up");
        is($s->{redis_logged}, $logged[$n - 1], "scenario 6: node $n logged its share of the POSTs");
        is($s->{redis_read}, $total, "scenario 6: node $n read every entry of the log");
        is($s->{events_delivered}, $delivered[$n - 1],
           "scenario 6: node $n delivered to its share of the subscribers");
    }

    for my $row ('below saturation \(\d+\/s\): latency p99 \(ms\)',
                 'as fast as possible: deliveries\/s', 'max POST rate: POSTs answered\/s') {
        like($text, qr/^\| $row \| [\d.]+ \| [\d.]+ \| [\d.]+ \| — \| [^|]*: (met|NOT met) \|$/m,
             "scenario 6: the table has '$row' for both, the ratio and the verdict");
    }
}

# ---- scenario 7: HTTP/2 over TLS, 7a many streams per connection, 7b one each
for my $id ('7a', '7b') {
    like($text, qr/^### Scenario $id: /m, "the table has scenario $id");
    my $ours = $report->{results}{$id}{sse} || {};
    my $them = $report->{results}{$id}{nchan} || {};
    my $p = $ours->{params} || {};

    ok($p->{h2} && $p->{streams}, "scenario $id: HTTP/2, $p->{streams} streams per connection");
    ok(!$ours->{fatal}, "scenario $id: ours ran") or diag($ours->{fatal});
    ok(!$ours->{error_log}, "scenario $id: no alert in our error.log")
        or diag(join "\n", @{ $ours->{error_log} });
    is($ours->{connected}, $p->{subs}, "scenario $id: every stream opened");
    is($ours->{warmup_missing}, 0, "scenario $id: every stream got the warm-up event");
    ok($ours->{expected} && $ours->{expected} == $p->{subs} * $p->{events},
       "scenario $id: $p->{subs} streams x $p->{events} events expected")
        or diag('expected ' . ($ours->{expected} // 'none'));
    delivered_once($ours, "scenario $id");
    # the figures of its table: memory per stream, CPU, the workers' writes
    # (at least one per connection for each event, none of them lost)
    my $conns = int(($p->{subs} + $p->{streams} - 1) / $p->{streams});
    ok(defined $ours->{rss_per_sub_bytes} && defined $ours->{server_cpu_us_per_delivery},
       "scenario $id: memory per stream and CPU per delivery measured");
    ok(defined $ours->{writes_per_event} && $ours->{writes_per_event} >= $conns,
       "scenario $id: writes per event counted (at least one per connection)")
        or diag('writes per event ' . ($ours->{writes_per_event} // 'none'));

    diag("scenario $id: nchan: $them->{fatal}") if $them->{fatal};
    is($them->{connected}, $p->{subs}, "scenario $id: nchan's streams opened");
    ok(defined $them->{deliveries_per_s} && defined $them->{writes_per_event},
       "scenario $id: nchan's figures are there");
}
for my $row ('server RSS per stream \(KB\)', 'server CPU per delivery \(µs\)',
             'writes per event', 'latency p99 \(ms\)', 'missing') {
    like($text, qr/^### Scenario 7b: .*?^\| $row \| [\d.]+ \| [\d.]+ \| [^|]+ \| [^|]*\|$/ms,
         "scenario 7: the table has '$row' for both");
}

done_testing;
