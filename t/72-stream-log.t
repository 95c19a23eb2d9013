#!/usr/bin/perl
# error.log tells an operator about each stream: at info, a line when it
# opens (its channels, the client's address) and one when it ends (its
# channels, how long it lasted, how many events it was sent); at warn, a
# line when it is closed as too slow, naming its channels.  The channels
# here come from a request header, so that nothing but the module's own
# words can put them in a line (the request line nginx adds does not
# hold them).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 1,
    http => "client_body_buffer_size 64k;\nsse_history 1000;\n",
    server_extra => <<'EOS',
        location = /hv { sse_stream $http_x_ch; sse_heartbeat off; }
        location = /slowhv { sse_stream $http_x_ch; sse_max_pending 16k; sse_heartbeat off; }
EOS
);

sub lines_of { grep { length } split /\n/, $_[0] }

# a duration in a line: "1234ms", "1.2s", "1.234 s"... in seconds
sub duration_in {
    my ($l) = @_;
    return undef unless $l =~ /\b(\d+(?:\.\d+)?)\s?(ms|s|sec|seconds?)\b/;
    return $2 eq 'ms' ? $1 / 1000 : $1 + 0;
}

# ------------------------------------------------ a stream of two channels

my $mark = $srv->log_mark;
my $t0 = time();
my $s = $srv->sse_connect('/hv', headers => { 'X-Ch' => 'news,sports' });
is($s->status, 200, 'a stream of news,sports');
ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');

my @open;
wait_until(sub {
    @open = grep { /news/ && /sports/ } lines_of($srv->error_log_since($mark));
    @open;
}, 5);
is(scalar(@open), 1, 'one line when it opens names its channels news and sports')
    or diag("error.log since the connect:\n" . $srv->error_log_since($mark));
like($open[0] // '', qr/\[info\]/, '...at info');
like($open[0] // '', qr/\b127\.0\.0\.1\b/, '...and the client 127.0.0.1');

my @ids;
for my $i (1 .. 7) {
    my $r = $srv->publish('/pub/' . ($i % 2 ? 'news' : 'sports'), "event $i");
    is($r->{status}, 201, "publish event $i") unless $r->{status} == 201;
    push @ids, $r->{json}{id};
}
my @ev = $s->read_events(count => 7, timeout => 5);
is_deeply([map { $_->{id} } @ev], \@ids, 'the stream got the 7 events');
sleep 1.5;

my $mark2 = $srv->log_mark;
$s->close;
my $lived = time() - $t0;
ok($srv->wait_stat(subscribers => 0, 5), 'the stream is gone');
my @end;
wait_until(sub {
    @end = grep { /news/ && /sports/ } lines_of($srv->error_log_since($mark2));
    @end;
}, 5);
is(scalar(@end), 1, 'one line when it ends names its channels news and sports')
    or diag("error.log since the close:\n" . $srv->error_log_since($mark2));
my $end = $end[0] // '';
like($end, qr/\[info\]/, '...at info');
like($end, qr/\b7 events\b/, '...says it was sent 7 events');
my $d = duration_in($end);
ok(defined $d, '...says how long it lasted (ms or s)') or diag("line: $end");
ok(defined $d && $d >= 1.4 && $d <= $lived + 1,
   sprintf('...%s, for a stream of %.1f s', $d // 'no duration', $lived));

# ------------------------------------------------ no event at all

$mark = $srv->log_mark;
my $q = $srv->sse_connect('/hv', headers => { 'X-Ch' => 'quiet' });
is($q->status, 200, 'a stream of channel quiet');
ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');
$q->close;
ok($srv->wait_stat(subscribers => 0, 5), 'closed at once');
my @q;
wait_until(sub { @q = grep { /quiet/ } lines_of($srv->error_log_since($mark)); @q >= 2 }, 5);
is(scalar(@q), 2, 'two lines name channel quiet: its start and its end')
    or diag("error.log:\n" . $srv->error_log_since($mark));
like($q[1] // '', qr/\b0 events\b/, 'the end line says 0 events');

# ------------------------------------------------ too slow

$mark = $srv->log_mark;
my $slow = $srv->sse_connect('/slowhv', headers => { 'X-Ch' => 'slowch' }, rcvbuf => 4096);
is($slow->status, 200, 'a stream that does not read (sse_max_pending 16k)');
ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 subscriber');
my $n = 0;
while ($n < 400 && $srv->stat('subscribers') == 1) {
    for (1 .. 10) {
        my $r = $srv->publish('/pub/slowch', sprintf('%04d ', ++$n) . ('w' x 20_000));
        is($r->{status}, 201, "publish $n") unless $r->{status} == 201;
    }
}
ok($srv->wait_stat(subscribers => 0, 10), "it is closed as too slow (after $n x 20 kB)");
is($srv->stat('slow_closed'), 1, 'status: slow_closed 1');
my @w;
wait_until(sub {
    @w = grep { /\[warn\]/ && /slowch/ } lines_of($srv->error_log_since($mark));
    @w;
}, 5);
is(scalar(@w), 1, 'one [warn] line names the channel slowch of the slow stream')
    or diag("error.log:\n" . join("\n", grep { !/buffered to a temporary/ }
                                   lines_of($srv->error_log_since($mark))));
$slow->close;

$srv->stop;
done_testing;
