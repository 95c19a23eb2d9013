#!/usr/bin/perl
# GET and DELETE on the publish endpoint.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(workers => 2);

sub ids_of { map { $_->{id} // 'undef' } @_ }

sub check_shape {
    my ($r, $code, $name) = @_;
    is($r->{status}, $code, "$name: $code");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    like($r->{body} // '', qr/\A\{[^\n]*\}\n?\z/, "$name: one-line object");
    my $j = $r->{json} || {};
    is_deeply([sort keys %$j], [qw(channel events id subscribers)], "$name: keys channel, id, events, subscribers");
    return $j;
}

# --- unknown channels
for my $m ('GET', 'DELETE') {
    check_json_error($srv->http($m, '/pub/nobody'), 404, "$m of an unknown channel");
}

# --- GET does not publish
my @ids = map { $srv->publish('/pub/adm', "adm $_")->{json}{id} } 1 .. 3;
{
    my $j = check_shape($srv->http('GET', '/pub/adm'), 200, 'GET adm');
    is($j->{channel}, 'adm', 'GET: channel');
    is($j->{id}, $ids[-1], 'GET: id of the last event');
    is($j->{events}, 3, 'GET: 3 events kept');
    is($j->{subscribers}, 0, 'GET: 0 subscribers');
    my $again = $srv->http('GET', '/pub/adm')->{json};
    is($again->{events}, 3, 'GET twice: still 3 events (GET publishes nothing)');
    is($srv->stat('events_published'), 3, 'status: 3 published');
}

# --- subscriber counts are hub-wide
my @subs = map { $srv->sse_connect('/events/adm') } 1 .. 4;
push @subs, $srv->sse_connect('/events/adm,elsewhere');
my $http10 = $srv->sse_connect('/events/adm', http10 => 1);
my $bystander = $srv->sse_connect('/events/elsewhere');
is(scalar(grep { $_->status == 200 } @subs, $http10, $bystander), 7, 'streams open');
{
    my %w;
    for (1 .. 8) {
        my $r = $srv->http('GET', '/pub/adm');
        $w{ $r->{worker} }{ $r->{json}{subscribers} // 'undef' }++;
    }
    my @answers = map { keys %{ $w{$_} } } keys %w;
    is_deeply([sort { $a <=> $b } @answers], [(6) x @answers], 'GET from every worker counts 6 subscribers')
        or diag(explain \%w);
    diag('GET answered by workers ' . join ', ', sort keys %w);
}

# --- DELETE ends the channel's streams and forgets its history
{
    my $j = check_shape($srv->http('DELETE', '/pub/adm'), 200, 'DELETE adm');
    is($j->{channel}, 'adm', 'DELETE: channel');
    is($j->{events}, 3, 'DELETE: 3 events forgotten');
    is($j->{subscribers}, 6, 'DELETE: 6 streams ended');
    for my $i (0 .. $#subs) {
        ok($subs[$i]->is_closed(3), "DELETE: stream $i ended");
        ok($subs[$i]->ended_cleanly, "DELETE: stream $i ended with the chunked terminator")
            or diag('eof without terminator? ' . ($subs[$i]{protocol_error} // ''));
    }
    ok($http10->is_closed(3), 'DELETE: HTTP/1.0 stream closed');
    ok(!$bystander->is_closed(0.3), 'DELETE: a stream of another channel stays open');
    ok($srv->wait_stat(subscribers => 1, 3), 'status: one subscriber left');
    check_json_error($srv->http('GET', '/pub/adm'), 404, 'GET after DELETE');
    check_json_error($srv->http('DELETE', '/pub/adm'), 404, 'DELETE after DELETE');

    my $s = $srv->sse_connect('/events/adm', headers => { 'Last-Event-ID' => '0-0' });
    my @ev = $s->read_events(timeout => 0.5);
    is(scalar @ev, 0, 'after DELETE: nothing to replay');
    my $r = $srv->publish('/pub/adm', 'reborn');
    is($r->{status}, 201, 'publish after DELETE: 201');
    ok(id_cmp($r->{json}{id}, $ids[-1]) > 0, 'publish after DELETE: ids are not reused');
    @ev = $s->read_events(count => 1, timeout => 3);
    is_deeply([ids_of(@ev)], [$r->{json}{id}], 'publish after DELETE: delivered');
    my $g = $srv->http('GET', '/pub/adm')->{json};
    is($g->{events}, 1, 'GET after re-publish: 1 event');
    is($g->{subscribers}, 1, 'GET after re-publish: 1 subscriber');

    # DELETE of a channel with subscribers but no events
    my $j2 = check_shape($srv->http('DELETE', '/pub/elsewhere'), 200, 'DELETE of a channel with only a subscriber');
    is($j2->{events}, 0, 'DELETE elsewhere: 0 events');
    is($j2->{subscribers}, 1, 'DELETE elsewhere: 1 stream ended');
    ok($bystander->is_closed(3), 'DELETE elsewhere: its stream ended');
    ok($bystander->ended_cleanly, 'DELETE elsewhere: with the chunked terminator');
    ok($srv->wait_stat(subscribers => 1, 3), 'status: only the resumed adm stream is left');
    $s->close;
}

# --- a client reconnecting after DELETE resumes from the new history
{
    my $s = $srv->sse_connect('/events/adm2');
    my $a = $srv->publish('/pub/adm2', 'before')->{json}{id};
    my @ev = $s->read_events(count => 1, timeout => 3);
    is_deeply([ids_of(@ev)], [$a], 'adm2: the stream got the event');
    is($srv->http('DELETE', '/pub/adm2')->{status}, 200, 'DELETE adm2');
    ok($s->is_closed(3), 'stream ended');
    ok($s->ended_cleanly, 'stream ended with the chunked terminator');
    my @after = map { $srv->publish('/pub/adm2', "after $_")->{json}{id} } 1 .. 3;
    my $re = $srv->sse_connect('/events/adm2', headers => { 'Last-Event-ID' => $a });
    my @got = $re->read_events(count => 3, timeout => 3);
    push @got, $re->read_events(timeout => 0.3);
    is_deeply([ids_of(@got)], \@after, 'reconnect with Last-Event-ID: every event published since');
    $re->close;
}

$_->close for @subs, $http10, $bystander;
$srv->stop;
done_testing;
