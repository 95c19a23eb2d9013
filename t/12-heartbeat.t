#!/usr/bin/perl
# sse_heartbeat: ": heartbeat\n\n" on an idle stream only.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 2,
    http => "sse_heartbeat 1s;\n",
    server_extra => <<'EOS',
        location ~ ^/nohb/(.+)$ { sse_stream $1; sse_heartbeat off; }
        location ~ ^/hb3/(.+)$ { sse_stream $1; sse_heartbeat 3s; }
EOS
);

my $HB = ": heartbeat\n\n";

# --- idle stream: a heartbeat within ~2 s, exact bytes
{
    my $t0 = time();
    my $s = $srv->sse_connect('/events/idle');
    my $off = $srv->sse_connect('/nohb/idle');
    my $slow = $srv->sse_connect('/hb3/idle');
    $s->wait_bytes(13, 2);
    sleep 0.5;
    is($s->raw, "retry: 3000\n\n", 'no heartbeat in the first 0.5 s');
    ok($s->wait_for(qr/\Q$HB\E/, 2.5), 'heartbeat within ~2 s on an idle stream');
    my $dt = time() - $t0;
    ok($dt >= 0.8 && $dt < 3, sprintf('first heartbeat after %.2fs', $dt));
    is($s->raw, "retry: 3000\n\n$HB", 'exact bytes: ": heartbeat\n\n" after the retry line');
    # over the next 3.5 s: 2 to 5 more
    $s->read_events(timeout => 3.5);
    my $n = () = $s->raw =~ /\Q$HB\E/g;
    ok($n >= 3 && $n <= 6, "heartbeats keep coming at about 1/s ($n in ~4.5 s)");
    is($s->raw, "retry: 3000\n\n" . ($HB x $n), 'nothing but heartbeats on the idle stream');
    my @ev = $s->read_events(timeout => 0);
    is(scalar @ev, 0, 'heartbeats are not events');
    is(scalar(grep { $_ eq ' heartbeat' } $s->comments), $n, 'parser saw them as comments');

    $off->read_events(timeout => 0);
    is($off->raw, "retry: 3000\n\n", 'sse_heartbeat off: no heartbeat after ~5 s');
    my $m = () = $slow->raw =~ /\Q$HB\E/g;
    ok($m >= 1 && $m <= 2, "sse_heartbeat 3s: $m heartbeat(s) in ~5 s");

    # an event still arrives normally after heartbeats
    my $r = $srv->publish('/pub/idle', 'after');
    @ev = $s->read_events(count => 1, timeout => 2);
    is($ev[0]{id} // '', $r->{json}{id}, 'event after heartbeats');
    $_->close for $s, $off, $slow;
}

# --- busy stream: no heartbeat while events flow more often than the interval
{
    my $s = $srv->sse_connect('/events/busy');
    $s->wait_bytes(13, 2);
    my $t0 = time();
    my $i = 0;
    while (time() - $t0 < 3) {
        $srv->publish('/pub/busy', 'tick ' . $i++);
        $s->read_events(timeout => 0.3);
    }
    my $n = () = $s->raw =~ /\Q$HB\E/g;
    is($n, 0, "no heartbeat on a stream that got an event every 0.3 s ($i events)");
    ok($s->wait_for(qr/\Q$HB\E/, 2.5), 'heartbeat once it goes idle');
    $s->close;
}

$srv->stop;
done_testing;
