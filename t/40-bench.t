#!/usr/bin/perl
# The benchmark, small: bench/run.pl --quick runs every scenario against our
# module and against nchan, so the load client, the configs and the table
# never rot.  Our module must deliver every event exactly once, in order;
# the figures themselves are for make bench, not asserted here.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use JSON::PP;

my $repo = repo_dir();

my $build = qx{make -s -C $repo/bench client 2>&1};
is($?, 0, 'the load client builds') or diag($build);
ok(-x "$repo/bench/ssebench", 'bench/ssebench is there');

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
    is($ours->{unique}, $ours->{expected}, "scenario $id: every event delivered");
    is($ours->{missing}, 0, "scenario $id: none missing");
    is($ours->{duplicated}, 0, "scenario $id: none duplicated");
    is($ours->{out_of_order}, 0, "scenario $id: none out of order");
    is($ours->{closed_early}, 0, "scenario $id: no stream closed");
    ok(($ours->{latency_us}{count} // 0) == $ours->{deliveries}
       && $ours->{latency_us}{p50} > 0 && $ours->{latency_us}{max} >= $ours->{latency_us}{p99},
       "scenario $id: latency figures");
    ok(defined $ours->{server_cpu_s} && defined $ours->{server_rss_kb}{idle},
       "scenario $id: server CPU and memory sampled");

    # nchan is the yardstick, not under test: its own failures are shown
    diag("scenario $id: nchan: $them->{fatal}") if $them->{fatal};
    is($them->{connected}, $p->{subs}, "scenario $id: nchan's subscribers connected");
    ok(defined $them->{deliveries_per_s}, "scenario $id: nchan's figures are there");
}

like($text, qr/\| deliveries\/s \| \d+ \| \d+ \| [\d.]+ \|/, 'the table compares deliveries/s');

done_testing;
