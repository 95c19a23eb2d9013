#!/usr/bin/perl
# The libFuzzer targets of fuzz/ (the module's parsers, with AddressSanitizer
# and UndefinedBehaviorSanitizer): builds them (make fuzz-build) and runs
# each for a few seconds (SSE_FUZZ_SECONDS, default 12) from its seed corpus
# in fuzz/corpus/<target>/.  Fails when one reports a crash, an overrun,
# undefined behaviour, a leak, a timeout or a broken property; the input is
# kept in build/fuzz/t90-crashes/.  make fuzz runs them for longer.
use strict;
use warnings;
use Test::More;
use FindBin;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $repo = "$FindBin::Bin/..";
chdir $repo or die "chdir $repo: $!";

my $seconds = $ENV{SSE_FUZZ_SECONDS} || 12;
my $fuzz_dir = $ENV{SSE_FUZZ_DIR} || 'build/fuzz';

my @targets = sort map { m{^fuzz/fuzz_(\w+)\.c$} ? $1 : () } glob 'fuzz/fuzz_*.c';
@targets = grep { $_ ne 'common' } @targets;
ok(@targets >= 5, 'fuzz targets: ' . join(' ', @targets));

my $out = `make -s fuzz-build 2>&1`;
is($?, 0, 'make fuzz-build') or do { diag($out); done_testing(); exit };

my $crashes = "$fuzz_dir/t90-crashes";
make_path($crashes);
my $tmp = tempdir('sse-fuzz-XXXXXX', TMPDIR => 1, CLEANUP => 1);

for my $t (@targets) {
    my $bin = "$fuzz_dir/fuzz_$t";
    my $seeds = "fuzz/corpus/$t";
    my @seeds = grep { -f } glob "$seeds/*";
    ok(-x $bin, "$t: $bin built");
    ok(@seeds >= 5, "$t: seed corpus $seeds has " . scalar(@seeds) . ' inputs');

    my @cmd = ($bin,
        "-max_total_time=$seconds", '-max_len=4096', '-rss_limit_mb=2048',
        '-timeout=30', '-print_final_stats=1',
        (-f "fuzz/$t.dict" ? ("-dict=fuzz/$t.dict") : ()),
        "-artifact_prefix=$crashes/$t-",
        "$tmp/corpus-$t", $seeds);
    mkdir "$tmp/corpus-$t";

    my $log = "$tmp/$t.log";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $log or die "$log: $!";
        open STDERR, '>&', \*STDOUT or die;
        $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1';
        exec @cmd or die "exec $bin: $!";
    }

    # libFuzzer stops itself; this is only for a fuzzer that hangs
    my $deadline = time + $seconds + 120;
    my $status;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) { $status = $?; last }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $status = -1;
            last;
        }
        sleep 0.2;
    }

    my $text = do { local (@ARGV, $/) = ($log); <> } // '';

    my ($files) = $text =~ /INFO: seed corpus: files: (\d+)/;
    my ($runs) = $text =~ /stat::number_of_executed_units:\s*(\d+)/;
    my ($rate) = $text =~ /stat::average_exec_per_sec:\s*(\d+)/;
    my ($cov) = $text =~ /#\d+\s+DONE\s+cov: (\d+)/;
    my ($added) = $text =~ /stat::new_units_added:\s*(\d+)/;

    my $bad = qr/PROPERTY VIOLATED|ERROR: (?:AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:/;
    ok($status == 0 && $text !~ $bad,
       "$t: $seconds s without a crash, a leak or a broken property")
        or do {
            diag($status == -1 ? "$t: killed after it ran past ${seconds}s + 120 s"
                               : "$t: exit status " . ($status >> 8) . ', signal ' . ($status & 127));
            my @lines = split /\n/, $text;
            my ($first) = grep { $lines[$_] =~ $bad } 0 .. $#lines;
            $first //= @lines > 20 ? @lines - 20 : 0;
            my $last = $first + 3 > $#lines ? $#lines : $first + 3;
            my @ours = grep { /#\d+ 0x[0-9a-f]+ in (?:ngx_|fuzz_|ref_|check_parse|LLVMFuzzerTestOneInput)/ }
                       @lines[$first .. $#lines];
            diag(join "\n", @lines[$first .. $last], @ours[0 .. ($#ours < 7 ? $#ours : 7)]);
            my @art = $text =~ /Test unit written to (\S+)/g;
            diag("input kept: $_ (reproduce: $bin $_)") for @art;
        };

    is($files, scalar @seeds, "$t: libFuzzer read the " . scalar(@seeds) . ' seeds');
    ok(defined $runs && $runs > @seeds, "$t: ran inputs beyond the seeds")
        or diag("executions: " . ($runs // 'none reported'));

    diag(sprintf '%-9s %10s executions in %d s, %s exec/s, coverage %s, %s new inputs',
                 $t, $runs // '?', $seconds, $rate // '?', $cov // '?', $added // '?');
}

done_testing();
