#!/usr/bin/perl
# A batch that cannot fit in the zone is refused with 507 at once: no
# channel loses history to it.  A batch that fits once some old history is
# dropped is accepted, and only as much history goes as it needs.  And
# sse_max_events caps the events one publish may carry (default 1000):
# more is a 413 with nothing stored.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

sub ids_of { map { $_->{id} // 'undef' } @_ }

sub post_es {
    my ($srv, $path, $body, %o) = @_;
    return $srv->http('POST', $path, headers => { 'Content-Type' => 'text/event-stream' },
                      body => $body, timeout => 20, %o);
}

# channels whose history must survive what is refused: a mix of events
# smaller than half a page and of events a page or more each
my @KEEP = qw(keep1 keep2 keep3);
sub fill_keep {
    my ($srv) = @_;
    my %h;
    for my $i (1 .. 20) {
        for my $c (@KEEP) {
            my $d = "$c #$i " . ($c eq 'keep3' ? 'K' x 3000 : 'k' x 100);
            my $r = $srv->publish("/pub/$c", $d);
            die "publish to $c: $r->{status}\n" unless $r->{status} == 201;
            push @{ $h{$c} }, [$r->{json}{id}, $d];
        }
    }
    return \%h;
}

# the history of every keep channel is what was published, all of it
sub keep_intact {
    my ($srv, $h, $what) = @_;
    for my $c (@KEEP) {
        my $j = $srv->http('GET', "/pub/$c")->{json} // {};
        is_deeply([$j->{events}, $j->{id}], [20, $h->{$c}[-1][0]],
                  "$what: GET $c still shows its 20 events and its last id");
    }
    my @want = sort { id_cmp($a->[0], $b->[0]) } map { @{ $h->{$_} } } @KEEP;
    my $s = $srv->sse_connect('/events/' . join(',', @KEEP),
                              headers => { 'Last-Event-ID' => '0-0' });
    is($s->status, 200, "$what: a resume of " . join(',', @KEEP) . ' opens');
    my @got = $s->read_events(count => scalar @want, timeout => 10);
    push @got, $s->read_events(timeout => 0.3);
    is_deeply([ids_of(@got)], [map { $_->[0] } @want],
              "$what: the resume replays every kept event, in id order");
    is_deeply([map { $_->{data} } @got], [map { $_->[1] } @want], "$what: with their data");
    $s->close;
}

# ---------------------------------------------------------------------
# 1. A batch to 16 channels that the zone cannot hold, even empty: 200
#    events of 1.5 kB each, 3200 events in a 2 MB zone.

my $WIDE = join ',', map { "wide$_" } 1 .. 16;
my $srv = start_nginx(workers => 2, http => "sse_zone sse:2m;\nsse_history 1000;\nsse_heartbeat off;\n",
    server_extra => <<"EOS");
        location = /pubwide { sse_publish $WIDE; client_max_body_size 8m; }
EOS

my $hist = fill_keep($srv);
my $st0 = $srv->status;
my $wide = join '', map { "data: " . ('w' x 1500) . " $_\n\n" } 1 .. 200;
my $r = post_es($srv, '/pubwide', $wide);
check_json_error($r, 507, 'a batch of 200 x 1.5 kB events to 16 channels in a 2 MB zone');
my $st1 = $srv->status;
is($st1->{history_evicted}, $st0->{history_evicted}, '507: no history evicted for it');
is($st1->{events_kept}, $st0->{events_kept}, '507: the events kept are those kept before');
is($st1->{events_published}, $st0->{events_published}, '507: nothing published');
is($srv->http('GET', '/pub/wide1')->{status}, 404, '507: nothing stored in its channels');
keep_intact($srv, $hist, 'after the wide 507');

# ---------------------------------------------------------------------
# 2. A batch that fits once some old history is dropped: the zone is
#    filled with events of one size, then a batch of 100 more of that size
#    is accepted and about 100 of the oldest go, no more.

my (@fill, $n);
sub fill_batch {
    my ($ch, $k) = @_;
    my @d = map { $n++; "$ch $n " . ('f' x 1000) } 1 .. $k;
    return (join('', map { "data: $_\n\n" } @d), @d);
}
$n = 0;
my $full = 0;
my $evicted0 = $srv->stat('history_evicted');
for my $round (1 .. 60) {
    for my $c (1 .. 4) {
        my ($body, @d) = fill_batch("fill$c", 10);
        my $r = post_es($srv, "/pub/fill$c", $body);
        is($r->{status}, 201, "filling: batch to fill$c") unless $r->{status} == 201;
        push @fill, map { [ "fill$c", $_ ] } @d;
    }
    # the zone has been full for a few rounds: the history is steady
    last if $srv->stat('history_evicted') > $evicted0 && ++$full >= 3;
}
ok($full >= 3, 'the zone is full of history: old events are being evicted');
my $f0 = $srv->status;
my ($fbody, @fd) = fill_batch('fits', 100);
$r = post_es($srv, '/pub/fits', $fbody);
is($r->{status}, 201, 'a batch of 100 events that fits once some history goes: 201');
is($r->{json} && $r->{json}{events}, 100, '201: 100 events');
my $f1 = $srv->status;
my $gone = $f1->{history_evicted} - $f0->{history_evicted};
ok($gone >= 90 && $gone <= 125,
   "it evicted about as many old events as it brought (100): $gone");
is($f1->{events_kept}, $f0->{events_kept} + 100 - $gone, 'the events kept: those before, +100, -evicted');
is($srv->http('GET', '/pub/fits')->{json}{events}, 100, 'its channel keeps the 100');
{
    # what is left of the older history is its newest part, whole
    my $s = $srv->sse_connect('/events/fill1,fill2,fill3,fill4',
                              headers => { 'Last-Event-ID' => '0-0' });
    my @got = $s->read_events(timeout => 3);
    $s->close;
    my $kept = @got;
    ok($kept > 0, "the fill channels keep $kept events");
    is_deeply([map { $_->{data} } @got], [map { $_->[1] } @fill[$#fill - $kept + 1 .. $#fill]],
              'they are the newest fill events, in order, with no hole');
    ok(ids_strictly_increasing(ids_of(@got)), 'in id order');
}
$srv->stop;

# ---------------------------------------------------------------------
# 3. sse_max_events: very many tiny events where the cap allows them (507,
#    history intact), and the cap itself (413 past it).

$srv = start_nginx(workers => 2, may_fail => 1,
    http => "sse_zone sse:2m;\nsse_heartbeat off;\n",
    server_extra => <<'EOS');
        location = /pubtiny { sse_max_events 100000; sse_publish tiny; client_max_body_size 2m; }
        location = /pubthree { sse_max_events 3; sse_publish three; }
EOS
ok($srv, 'nginx starts with sse_max_events in locations')
    or diag($SSETest::LAST_START_OUTPUT);
unless ($srv) { done_testing; exit; }

$hist = fill_keep($srv);
$st0 = $srv->status;
$r = post_es($srv, '/pubtiny', "data: x\n\n" x 60000);
check_json_error($r, 507, '60,000 tiny events in a 2 MB zone');
$st1 = $srv->status;
is($st1->{history_evicted}, $st0->{history_evicted}, '507: no history evicted for it');
is($st1->{events_published}, $st0->{events_published}, '507: nothing published');
is($srv->http('GET', '/pub/tiny')->{status}, 404, '507: nothing stored in tiny');
keep_intact($srv, $hist, 'after the tiny 507');

# the default cap: 1000 events a publish
is($srv->publish('/pub/cap', 'first')->{status}, 201, 'cap: a first event');
my $cap0 = $srv->http('GET', '/pub/cap')->{json};
my $pub0 = $srv->stat('events_published');
$r = post_es($srv, '/pub/cap', join('', map { "data: e$_\n\n" } 1 .. 1001));
check_json_error($r, 413, 'a publish of 1001 events (default sse_max_events 1000)');
is_deeply($srv->http('GET', '/pub/cap')->{json}, $cap0, '413: the channel is as it was');
is($srv->stat('events_published'), $pub0, '413: nothing published');
{
    my $s = $srv->sse_connect('/events/cap');
    $r = post_es($srv, '/pub/cap', join('', map { "data: e$_\n\n" } 1 .. 1000));
    is($r->{status}, 201, 'a publish of 1000 events: 201');
    is($r->{json} && $r->{json}{events}, 1000, '201: 1000 events');
    my @got = $s->read_events(count => 1000, timeout => 10);
    is_deeply([map { $_->{data} } @got], [map { "e$_" } 1 .. 1000],
              'a subscriber gets the 1000, in order');
    $s->close;
}
# a cap set in the location
$r = post_es($srv, '/pubthree', "data: a\n\ndata: b\n\ndata: c\n\ndata: d\n\n");
check_json_error($r, 413, 'sse_max_events 3: 4 events');
is($srv->http('GET', '/pub/three')->{status}, 404, 'sse_max_events 3: nothing stored');
$r = post_es($srv, '/pubthree', "data: a\n\ndata: b\n\ndata: c\n\n");
is($r->{status}, 201, 'sse_max_events 3: 3 events are 201');
is($r->{json} && $r->{json}{events}, 3, 'sse_max_events 3: 3 events published');

ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;
