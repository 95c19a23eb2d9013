#!/usr/bin/perl
# Streams over HTTP/2 and with gzip on: these keep their request and write
# through nginx's filters; every event must still arrive when it is
# published, not when a buffer fills or the stream ends. curl is the client
# (it speaks HTTP/2 and decodes gzip).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IO::Select;
use Time::HiRes qw(time sleep);

# curl is installed by make deps; without HTTP/2 in it this test must fail
`curl --version 2>/dev/null` =~ /HTTP2/
    or BAIL_OUT('curl with HTTP/2 support is needed (make deps installs it)');

# HTTP/1.1 on the main port (the harness publishes there), HTTP/2 without
# TLS ("prior knowledge") on a second one
my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers      => 2,
    http         => "gzip on;\ngzip_types text/event-stream;\ngzip_min_length 1;\n",
    server_extra => "listen 127.0.0.1:$h2port http2;\n",
);

# starts curl on a stream; returns a reader of its de-framed output
sub curl_stream {
    my (@args) = @_;
    my $pid = open(my $fh, '-|', 'curl', '-sN', '-m', '20', @args)
        or die "curl: $!";
    return { pid => $pid, fh => $fh, buf => '' };
}

# reads until $re matches the output or the timeout passes
sub wait_output {
    my ($s, $re, $timeout) = @_;
    my $sel = IO::Select->new($s->{fh});
    my $end = time() + $timeout;
    while ($s->{buf} !~ $re) {
        my $left = $end - time();
        last if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($s->{fh}, my $chunk, 65536);
        last unless $n;
        $s->{buf} .= $chunk;
    }
    return $s->{buf} =~ $re;
}

sub stop_curl {
    my ($s) = @_;
    kill 'TERM', $s->{pid};
    close $s->{fh};
}

my $url = $srv->url('/events/h2g');
my $h2url = "http://127.0.0.1:$h2port/events/h2g";

my %clients = (
    'HTTP/2'        => curl_stream('--http2-prior-knowledge', '-i', $h2url),
    'HTTP/1.1 gzip' => curl_stream('--compressed', '-i', $url),
    'HTTP/2 gzip'   => curl_stream('--http2-prior-knowledge', '--compressed',
                                   '-i', $h2url),
);

for my $name (sort keys %clients) {
    ok(wait_output($clients{$name}, qr/retry: 3000\n\n/, 5),
       "$name: headers and retry line arrive before any event");
}

like($clients{'HTTP/2'}{buf}, qr{^HTTP/2 200}m, 'HTTP/2: status 200');
like($clients{'HTTP/2'}{buf}, qr{^content-type: text/event-stream; charset=utf-8\r?$}m,
     'HTTP/2: content type');
like($clients{'HTTP/1.1 gzip'}{buf}, qr{^Content-Encoding: gzip\r?$}mi,
     'HTTP/1.1 gzip: the stream is gzipped');
like($clients{'HTTP/2 gzip'}{buf}, qr{^content-encoding: gzip\r?$}mi,
     'HTTP/2 gzip: the stream is gzipped');

ok($srv->wait_stat(subscribers => 3, 5), 'three subscribers');

# each event must arrive on its own, while the stream stays open
my @ids;
for my $i (1 .. 3) {
    my $r = $srv->publish('/pub/h2g', "event $i\nsecond line");
    is($r->{status}, 201, "publish $i");
    push @ids, $r->{json}{id};

    for my $name (sort keys %clients) {
        my $frame = "id: $ids[-1]\ndata: event $i\ndata: second line\n\n";
        ok(wait_output($clients{$name}, qr/\Q$frame\E/, 3),
           "$name: event $i arrives at once, framed exactly");
    }
}

for my $name (sort keys %clients) {
    my @seen = $clients{$name}{buf} =~ /^id: (\S+)$/mg;
    is_deeply(\@seen, \@ids, "$name: every event once, in order");
}

# DELETE ends the streams cleanly on both protocols
my $d = $srv->http('DELETE', '/pub/h2g');
is($d->{status}, 200, 'DELETE');
for my $name (sort keys %clients) {
    my $s = $clients{$name};
    my $sel = IO::Select->new($s->{fh});
    my $end = time() + 5;
    my $eof = 0;
    while (time() < $end) {
        next unless $sel->can_read($end - time());
        my $n = sysread($s->{fh}, my $chunk, 65536);
        if (!$n) { $eof = 1; last }
        $s->{buf} .= $chunk;
    }
    ok($eof, "$name: the stream ended after DELETE");
    waitpid($s->{pid}, 0);
    is($? >> 8, 0, "$name: curl saw a complete response (exit 0)");
    close $s->{fh};
}

ok($srv->wait_stat(subscribers => 0, 5), 'no subscribers left');

$srv->stop;
done_testing;
