#!/usr/bin/perl
# sse_max_subscribers: per channel, hub-wide; one more gets 503.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 2,
    listen_opts => 'reuseport',      # spread connections over the workers
    server_extra => <<'EOS',
        location ~ ^/lim/(.+)$ { sse_stream $1; sse_max_subscribers 2; }
EOS
);

my @s = map { $srv->sse_connect('/lim/l1') } 1 .. 2;
is($s[0]->status, 200, 'first subscriber: 200');
is($s[1]->status, 200, 'second subscriber: 200');

{
    my $x = $srv->sse_connect('/lim/l1');
    is($x->status, 503, 'third subscriber: 503');
    my $r = { status => $x->status, headers => $x->headers, body => $x->body };
    check_json_error($r, 503, 'third subscriber');
    $x->close;
}
# many at once, so that several workers take some
my %w;
my @x = $srv->sse_connect_many(40, '/lim/l1');
my $rejected = grep { $_->status == 503 } @x;
$w{ $_->worker // '?' }++ for @x;
$_->close for @x;
is($rejected, 40, 'every further subscriber gets 503, whichever worker takes it');
diag('rejections answered by workers ' . join ', ', sort keys %w);
ok(keys %w > 1, 'the limit held on more than one worker') or diag(join ' ', %w);

{
    my $multi = $srv->sse_connect('/lim/l9,l1');
    is($multi->status, 503, 'a multi-channel stream including the full channel: 503');
    $multi->close;
    my $g = $srv->http('GET', '/pub/l9');
    is($g->{status}, 404, '...and it subscribed to none of them');
}

my $o = $srv->sse_connect('/lim/l2');
is($o->status, 200, 'another channel is not limited by l1');

my $r = $srv->publish('/pub/l1', 'to two');
is($r->{json}{subscribers}, 2, 'publish: 2 subscribers');
for my $i (0, 1) {
    my @ev = $s[$i]->read_events(count => 1, timeout => 3);
    is($ev[0]{data} // '', 'to two', "subscriber $i got the event");
}

$s[0]->close;
ok(wait_until(sub { ($srv->http('GET', '/pub/l1')->{json}{subscribers} // -1) == 1 }, 3),
   'a subscriber left');
my $again = $srv->sse_connect('/lim/l1');
is($again->status, 200, 'after one left, a new subscriber gets in');
my $over = $srv->sse_connect('/lim/l1');
is($over->status, 503, '...and the next is refused again');

# the unlimited location is not limited
my @free = map { $srv->sse_connect('/events/l1') } 1 .. 5;
is(scalar(grep { $_->status == 200 } @free), 5, 'a location without sse_max_subscribers is not limited');

$_->close for @s, $o, $again, $over, @free;
$srv->stop;
done_testing;
