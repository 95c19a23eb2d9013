#!/usr/bin/perl
# Several publishers at once, each on its own channel and each publish on
# its own connection (so both workers take publishes), while streams of
# several channels sit in both workers: every stream gets exactly the
# events of its channels (the ids the POST answers gave), in strictly
# increasing id order, none missing, none twice.  Then the same while one
# worker is stopped (SIGSTOP): it reads hundreds of interleaved events of
# every channel in one go when it continues.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

# streams spread over both workers through reuseport; a second port,
# without reuseport, for the publishes made while a worker is stopped
my $port2 = SSETest::_free_port();
my $srv = start_nginx(
    workers      => 2,
    listen_opts  => 'reuseport',
    http         => "sse_history 1000;\nsse_heartbeat off;\n",
    server_extra => "listen 127.0.0.1:$port2;\n",
);

my @CH  = map { "pp$_" } 0 .. 3;
my $PER = 150;                           # publishes per publisher

# --- the streams
my @kinds = (
    [join(',', @CH),          8],
    ['pp0,pp2',               6],
    ['pp3,pp1',               6],
    ['pp2,pp0,pp1',           6],
    ['pp3',                   4],
);
my @streams;                             # [stream, [channels]]
for my $k (@kinds) {
    my ($list, $n) = @$k;
    push @streams, map { [$_, [split /,/, $list]] } $srv->sse_connect_many($n, "/events/$list");
}
is(scalar(grep { $_->[0]->status == 200 } @streams), 30, '30 streams open');
{
    my %w;
    $w{ $_->[0]->worker // '?' }++ for grep { @{ $_->[1] } > 1 } @streams;
    is(scalar keys %w, 2, 'streams of several channels in both workers')
        or diag(join ' ', %w);
}
ok($srv->wait_stat(subscribers => 30, 5), 'status: 30 subscribers');

# each stream's events so far
my %got;                                 # stream index => [events]
my (%ids, %data_of);                     # channel => [ids]; id => data

# one publisher per channel, all at once, $per publishes each; the streams
# are read meanwhile (not those of a stopped worker: they wait)
sub publish_all {
    my ($phase, $per, %o) = @_;
    my @kids;
    for my $k (0 .. $#CH) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my $out = '';
            for my $i (1 .. $per) {
                my $r = SSETest::publish($srv, "/pub/$CH[$k]", "$CH[$k] $phase #$i",
                                         timeout => 10, %o);
                $out .= join(' ', $r->{status}, $r->{json}{id} // '-', $r->{worker} // '-') . "\n";
            }
            print $wr $out;
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [$pid, $rd];
    }
    my $sel = IO::Select->new(map { $_->[1] } @kids);
    my %text;
    my $t0 = time();
    while ($sel->count && time() - $t0 < 60) {
        for my $i (0 .. $#streams) {
            next if $o{skip_worker} && ($streams[$i][0]->worker // '') eq $o{skip_worker};
            push @{ $got{$i} }, $streams[$i][0]->read_events(timeout => 0);
        }
        for my $fh ($sel->can_read(0.01)) {
            my $n = sysread($fh, my $buf, 65536);
            if (!$n) { $sel->remove($fh); next }
            $text{"$fh"} .= $buf;
        }
    }
    waitpid($_->[0], 0) for @kids;

    my %pworkers;
    for my $k (0 .. $#kids) {
        my @lines = split /\n/, $text{"$kids[$k][1]"} // '';
        is(scalar @lines, $per, "$phase: publisher of $CH[$k]: $per answers");
        is(scalar(grep { /^201 \d+-\d+ / } @lines), $per,
           "$phase: publisher of $CH[$k]: every one 201 with an id");
        my $i = 0;
        my @mine;
        for my $l (@lines) {
            my ($st, $id, $w) = split / /, $l;
            $i++;
            push @mine, $id;
            $data_of{$id} = "$CH[$k] $phase #$i";
            $pworkers{$w}++;
        }
        ok(ids_strictly_increasing(@{ $ids{ $CH[$k] } || [] }, @mine),
           "$phase: $CH[$k]: its ids increase");
        push @{ $ids{ $CH[$k] } }, @mine;
    }
    return \%pworkers;
}

# what each stream got: exactly its channels' events, in id order, once
sub check_streams {
    my ($phase) = @_;
    {
        my %seen;
        my @all = map { @{ $ids{$_} || [] } } @CH;
        is(scalar(grep { !$seen{$_}++ } @all), scalar @all, "$phase: all ids distinct");
    }
    my $deadline = time() + 20;
    my %bad;
    for my $i (0 .. $#streams) {
        my ($s, $chs) = @{ $streams[$i] };
        my @want = sort { id_cmp($a, $b) } map { @{ $ids{$_} || [] } } @$chs;
        my $ev = $got{$i} ||= [];
        push @$ev, $s->read_events(count => @want - @$ev,
                                   timeout => ($deadline > time ? $deadline - time : 0.05))
            if @$ev < @want;
        push @$ev, $s->read_events(timeout => 0.1);
        my @g = map { $_->{id} // 'undef' } @$ev;
        my $name = join(',', @$chs);
        next if join(' ', @g) eq join(' ', @want)
            && !grep { ($_->{data} // '') ne ($data_of{ $_->{id} } // '?') } @$ev;
        my %w = map { $_ => 1 } @want;
        my %c;
        my @dup = grep { $c{$_}++ } @g;
        my $missing = grep { !$c{$_} } @want;
        my $order = ids_strictly_increasing(@g) ? 'in order' : 'OUT OF ORDER';
        push @{ $bad{$name} }, sprintf('stream %d (worker %s): %d events of %d, %d missing, '
            . '%d twice, %d foreign, %s%s', $i, $s->worker // '?', scalar @g, scalar @want,
            $missing, scalar @dup, scalar(grep { !$w{$_} } @g), $order,
            ($s->is_closed ? ', closed' : ''));
    }
    for my $k (@kinds) {
        my ($list) = @$k;
        ok(!$bad{$list}, "$phase: streams of $list: exactly the events of their channels, in id order, once")
            or diag(join "\n", @{ $bad{$list} });
    }
}

# --- phase 1: publishes spread over both workers
{
    my $pw = publish_all('spread', $PER);
    is(scalar keys %$pw, 2, 'spread: publishes were taken by both workers')
        or diag(join ' ', %$pw);
    check_streams('spread');
}

# --- phase 2: one worker stopped while the others publish, so that it
# reads every channel's events at once when it goes on
{
    my ($w) = sort map { $_->[0]->worker } grep { @{ $_->[1] } > 1 } @streams;
    ok(stop_process($w), "worker $w stopped");
    my $pw = publish_all('batched', 100, port => $port2, skip_worker => $w);
    ok(kill('CONT', $w), "worker $w continued");
    my @other = grep { $_ != $w } $srv->worker_pids;
    is_deeply([keys %$pw], \@other, 'batched: publishes were taken by the worker that runs');
    check_streams('batched');
}

is($srv->stat('slow_closed'), 0, 'no stream was closed as slow');
$_->[0]->close for @streams;
ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;
