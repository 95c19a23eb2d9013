#!/usr/bin/perl
# Every kind of stream at once, under a fast publisher: streams of one
# channel (raw, chunked), of two channels, HTTP/1.0 (raw, not chunked),
# gzip (through the filters) and HTTP/2 (through the filters) all get every
# event exactly, once, in id order, while events of 10 bytes to 9 KB (more
# than a worker's block) arrive singly and in batches, and while some of
# the streams are read as they go and others only at the end.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

`curl --version 2>/dev/null` =~ /HTTP2/
    or BAIL_OUT('curl with HTTP/2 support is needed (make deps installs it)');

my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers      => 2,
    listen_opts  => 'reuseport',
    http         => "sse_history 1000;\nsse_max_pending 64m;\nclient_max_body_size 4m;\n",
    server_extra => <<"EOS",
        listen 127.0.0.1:$h2port http2;
        location ~ ^/gz/(.+)\$ {
            gzip on;
            gzip_types text/event-stream;
            gzip_min_length 1;
            sse_stream \$1;
        }
EOS
);

# --- what will be published: [channel, [data, ...]] per POST
srand(20261124);
my @posts;
my %n_of = (da => 0, db => 0);
for my $i (1 .. 300) {
    my $ch = rand() < 0.5 ? 'da' : 'db';
    my $n = rand() < 0.1 ? 2 + int(rand(6)) : 1;     # some batches
    my @data;
    for my $k (1 .. $n) {
        my $r = rand();
        my $len = $r < 0.7 ? 10 + int(rand(200))
                : $r < 0.9 ? 1000 + int(rand(3000))
                :            3500 + int(rand(5500));  # over a block
        my $d = sprintf('%s #%d.%d ', $ch, $i, $k);
        $d .= chr(97 + ($_ % 26)) for 1 .. $len - length $d;
        substr($d, 40, 1, "\n") if $len > 100 && rand() < 0.3;   # multi-line
        push @data, $d;
    }
    push @posts, [$ch, \@data];
    $n_of{$ch} += $n;
}

# --- the streams
my @single_a = $srv->sse_connect_many(25, '/events/da');
my @single_b = $srv->sse_connect_many(25, '/events/db');
my @multi    = $srv->sse_connect_many(15, '/events/da,db');
my @http10   = $srv->sse_connect_many(5, '/events/da', http10 => 1);
my @gzip     = $srv->sse_connect_many(5, '/gz/da,db',
                   headers => { 'Accept-Encoding' => 'gzip' });
my @all = (@single_a, @single_b, @multi, @http10, @gzip);
is(scalar(grep { $_->status == 200 } @all), 75, '75 streams open');
ok(!(grep { ($_->header('transfer-encoding') // '') =~ /chunked/ } @http10),
   'HTTP/1.0 streams are not chunked');
is(scalar(grep { ($_->header('content-encoding') // '') eq 'gzip' } @gzip), 5,
   'gzip streams are gzipped');

my @h2;
for (1 .. 2) {
    my $pid = open(my $fh, '-|', 'curl', '-sN', '-m', '60', '--http2-prior-knowledge',
                   "http://127.0.0.1:$h2port/events/da,db") or die "curl: $!";
    push @h2, { pid => $pid, fh => $fh, p => SSETest::Parser->new, ev => [] };
}
ok($srv->wait_stat(subscribers => 77, 5), 'status: 77 subscribers');

# --- a child publishes as fast as it can and reports the ids
pipe(my $rd, my $wr) or die "pipe: $!";
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    close $rd;
    for my $p (@posts) {
        my ($ch, $data) = @$p;
        my $r = @$data == 1
            ? $srv->publish("/pub/$ch", $data->[0], timeout => 10)
            : $srv->publish("/pub/$ch", join('', map { 'data: ' . join("\ndata: ", split /\n/, $_, -1) . "\n\n" } @$data),
                            content_type => 'text/event-stream', timeout => 10);
        print $wr (($r->{status} // 0) . ' ' . ($r->{json}{id} // '') . ' ' . ($r->{json}{events} // 0) . "\n");
    }
    close $wr;
    POSIX::_exit(0);
}
close $wr;

# the single-channel streams of "da" are read as they go, the others not
my $t0 = time();
my @res;
my $sel = IO::Select->new($rd, map { $_->{fh} } @h2);
my $open = 1 + @h2;
my $pub_done;
while ($open && time() - $t0 < 60 && (!$pub_done || time() - $pub_done < 15)) {
    push @{ $_->{early} }, $_->read_events(timeout => 0) for @single_a[0 .. 9];
    for my $fh ($sel->can_read(0.01)) {
        my $n = sysread($fh, my $buf, 65536);
        if (!$n) { $sel->remove($fh); $open--; $pub_done = time() if $fh == $rd; next }
        if ($fh == $rd) { push @res, $buf; next }
        my ($c) = grep { $_->{fh} == $fh } @h2;
        $c->{p}->feed($buf);
        push @{ $c->{ev} }, $c->{p}->take;
        if (@{ $c->{ev} } >= $n_of{da} + $n_of{db}) { $sel->remove($fh); $open-- }
    }
}
waitpid($pid, 0);
my @lines = split /\n/, join '', @res;
is(scalar @lines, scalar @posts, 'every POST answered');
is(scalar(grep { /^201 / } @lines), scalar @posts, 'every POST got 201');

# the ids of every event, from each answer's last id and its count
my (%expect, @order);
for my $i (0 .. $#posts) {
    my ($status, $id, $n) = split / /, $lines[$i] // '';
    my ($ms, $seq) = ($id // '') =~ /^(\d+)-(\d+)$/ or next;
    my ($ch, $data) = @{ $posts[$i] };
    is($n, scalar @$data, "POST $i: $n events") unless $n == @$data;
    for my $k (0 .. $#$data) {
        my $eid = $ms . '-' . ($seq - $#$data + $k);
        push @{ $expect{$ch} }, [$eid, $data->[$k]];
    }
}
is(scalar @{ $expect{da} // [] }, $n_of{da}, "$n_of{da} events on da");
is(scalar @{ $expect{db} // [] }, $n_of{db}, "$n_of{db} events on db");
my @both = sort { id_cmp($a->[0], $b->[0]) } @{ $expect{da} }, @{ $expect{db} };

# one deadline for all the reading: a broken delivery fails in seconds,
# not in a timeout per stream
my $deadline = time + 30;

sub check {
    my ($what, $streams, $want) = @_;
    my $good = 0;
    my $first_bad;
    for my $s (@$streams) {
        my @ev = @{ $s->{early} || [] };
        push @ev, $s->read_events(count => @$want - @ev,
            timeout => ($deadline > time ? $deadline - time : 0.05)) if @ev < @$want;
        push @ev, $s->read_events(timeout => 0.05);
        my $ok = @ev == @$want;
        for my $i (0 .. $#$want) {
            last unless $ok;
            $ok = ($ev[$i]{id} // '') eq $want->[$i][0] && ($ev[$i]{data} // '') eq $want->[$i][1];
            $first_bad //= sprintf('event %d: got id %s (%d bytes), want %s (%d bytes)', $i,
                $ev[$i]{id} // 'none', length($ev[$i]{data} // ''), $want->[$i][0],
                length $want->[$i][1]) unless $ok;
        }
        $first_bad //= sprintf('%d events, want %d', scalar @ev, scalar @$want) unless $ok;
        $good++ if $ok;
    }
    is($good, scalar @$streams, "$what: every event, exactly, once, in order")
        or diag($first_bad);
}

check('streams of da', \@single_a, $expect{da});
check('streams of db', \@single_b, $expect{db});
check('streams of da,db', \@multi, \@both);
check('HTTP/1.0 streams of da', \@http10, $expect{da});
check('gzip streams of da,db', \@gzip, \@both);

my $h2_good = 0;
for my $c (@h2) {
    my @ev = @{ $c->{ev} };
    $h2_good++ if @ev == @both
        && !grep { $ev[$_]{id} ne $both[$_][0] || $ev[$_]{data} ne $both[$_][1] } 0 .. $#both;
    kill 'TERM', $c->{pid};
    close $c->{fh};
}
is($h2_good, 2, 'HTTP/2 streams of da,db: every event, exactly, once, in order');

is($srv->stat('slow_closed'), 0, 'no stream was closed as slow');
$_->close for @all;
ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;
