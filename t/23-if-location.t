#!/usr/bin/perl
# An "if" block inside an sse_stream or sse_publish location (a common way
# to tag or log some requests): nginx runs the location's handler with the
# if block's configuration, which must carry the channels and the limits.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(workers => 1, server => <<'EOS');
        client_max_body_size 1k;
        location ~ ^/pub/(.+)$ {
            sse_publish $1;
            if ($arg_trace) { set $traced 1; }
        }
        location ~ ^/events/(.+)$ {
            sse_stream $1;
            if ($arg_trace) { set $traced 1; }
        }
        location = /status { sse_status; }
EOS

my $s = $srv->sse_connect('/events/iff?trace=1');
is($s->status, 200, 'a stream through the if block opens');
ok($srv->wait_stat(subscribers => 1, 5), 'it is subscribed');

my $r = $srv->publish('/pub/iff?trace=1', 'through the if');
is($r->{status}, 201, 'POST through the if block: 201');
is($r->{json}{channel}, 'iff', 'on the channel of the location');
my @ev = $s->read_events(count => 1, timeout => 5);
is($ev[0] && $ev[0]{data}, 'through the if', 'the subscriber gets the event');

my $g = $srv->http('GET', '/pub/iff?trace=1');
is($g->{status}, 200, 'GET through the if block: 200');
is($g->{json} && $g->{json}{events}, 1, 'one event kept');

my $big = $srv->publish('/pub/iff?trace=1', 'x' x 2000);
is($big->{status}, 413, 'a body over client_max_body_size through the if block: 413');
check_json_error($big, 413, 'over the limit through the if block');

my $d = $srv->http('DELETE', '/pub/iff?trace=1');
is($d->{status}, 200, 'DELETE through the if block: 200');
ok($s->is_closed(5), 'the stream is ended');

$srv->stop;
done_testing;
