#!/usr/bin/perl
# Redis mode, the one log: two nodes (two nginx, 2 workers each) on one
# redis-server.
#   - a POST on one node is one entry of sse:log (fields channel, event,
#     data) whose id is the id the POST answered and the id subscribers on
#     both nodes see; batches, several channels, bad input (nothing logged),
#     GET and DELETE seen the same from both nodes;
#   - exactly once: 200 events POSTed alternately to both nodes, 3 channels,
#     subscribers on both workers of both nodes, some on several channels:
#     each gets each of its events once, in log order, with the log's ids;
#   - resume on the other node: a Last-Event-ID from node A used on node B
#     gives exactly the missed events (several channels, ids from the
#     middle of the log, the query argument);
#   - a fresh node started after the events were logged serves a resume
#     from them: the latest sse_history events of each channel.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $http = "sse_history 1000;\nsse_heartbeat 1s;\nsse_max_message_size 1k;\n";
my $extra = "location = /pub-two { sse_publish c0,c1; }\n";
my $A = start_node(redis => $r, name => 'A', http => $http, server_extra => $extra);
my $B = start_node(redis => $r, name => 'B', http => $http, server_extra => $extra);

# the log's entries of some channels, as events
sub log_events {
    my (@ch) = @_;
    return entries_as_events($r->log_of('sse:log', @ch));
}

# ---------------------------------------------------------------- one log
{
    my $a1 = $A->sse_connect('/events/news');
    my $b1 = $B->sse_connect('/events/news');
    my $b2 = $B->sse_connect('/events/c0,c1');
    is(join(',', map { $_->status } $a1, $b1, $b2), '200,200,200', 'one log: streams open on A and B');

    my $res = $A->publish('/pub/news', 'hello');
    is($res->{status}, 201, 'POST on A: 201');
    is($res->{json}{channel} // '', 'news', 'POST on A: answer names the channel');
    is($res->{json}{events}, 1, 'POST on A: events 1');
    my $id1 = $res->{json}{id} // '';
    like($id1, qr/^\d+-\d+$/, "POST on A: answered id $id1 has Redis's <ms>-<seq> form");
    my @log = $r->log_of('sse:log', 'news');
    is(scalar @log, 1, 'the POST is one entry of sse:log');
    is(($log[0] // {})->{id} // '', $id1, 'the entry id is the id the POST answered');
    my $f0 = ($log[0] // {})->{fields} || {};
    is_deeply([sort keys %$f0], [sort grep { exists $f0->{$_} } qw(channel data history ttl)],
              'entry fields: channel, data (and the optional history/ttl), no event for a message');
    is(($log[0] // {})->{fields}{data} // '', 'hello', 'entry data');
    for my $s (['A', $a1], ['B', $b1]) {
        my @ev = $s->[1]->read_events(count => 1, timeout => 5);
        same_events(\@ev, [{ id => $id1, event => 'message', data => 'hello' }],
                    "subscriber on $s->[0] gets the event once, with the entry's id");
    }

    $res = $B->publish('/pub/news', 'second', type => 'tick');
    is($res->{status}, 201, 'POST ?event=tick on B: 201');
    my $id2 = $res->{json}{id} // '';
    ok(id_cmp($id2, $id1) > 0, 'ids increase across nodes');
    @log = $r->log_of('sse:log', 'news');
    is(($log[-1] // {})->{id}, $id2, 'B\'s POST is the next news entry');
    is(($log[-1] // {})->{fields}{event} // '(none)', 'tick', 'entry field event: tick');

    $res = $A->publish('/pub/news', "event: a\ndata: one\n\ndata: two\ndata: lines\n\n",
                       content_type => 'text/event-stream');
    is($res->{status}, 201, 'batch POST (text/event-stream, 2 events) on A: 201');
    is($res->{json}{events}, 2, 'batch: events 2');
    my $id4 = $res->{json}{id} // '';
    @log = $r->log_of('sse:log', 'news');
    is(scalar @log, 4, 'batch: two more entries');
    is(($log[-1] // {})->{id}, $id4, 'batch: the answered id is the last entry\'s');
    is((($log[-2] // {})->{fields}{event} // '') . '|' . (($log[-2] // {})->{fields}{data} // ''), 'a|one', 'batch: first entry');
    is(($log[-1] // {})->{fields}{data} // '', "two\nlines", 'batch: second entry, two lines of data');
    my @want = ({ id => $id2, event => 'tick', data => 'second' },
                { id => ($log[-2] // {})->{id}, event => 'a', data => 'one' },
                { id => $id4, event => 'message', data => "two\nlines" });
    same_events([$a1->read_events(count => 3, timeout => 5)], \@want, 'A\'s subscriber: tick, then the batch');
    same_events([$b1->read_events(count => 3, timeout => 5)], \@want, 'B\'s subscriber: the same events and ids');

    $res = $B->publish('/pub-two', 'both');
    is($res->{status}, 201, 'POST to two channels (c0,c1) on B: 201');
    my @ans = ref $res->{json} eq 'ARRAY' ? @{ $res->{json} } : ();
    is(join(',', map { $_->{channel} // '' } @ans), 'c0,c1', 'two-channel answer: an array, one object per channel');
    my @two = $r->log_of('sse:log', 'c0', 'c1');
    is(join(',', map { "$_->{fields}{channel}=$_->{id}" } @two),
       join(',', map { "$_->{channel}=" . ($_->{id} // '') } @ans),
       'one entry per channel, with the ids of the answer');
    same_events([$b2->read_events(count => 2, timeout => 5)],
                [map { { id => $_->{id}, event => 'message', data => 'both' } } @ans],
                'a c0,c1 subscriber gets both entries, in id order');

    # bad input is refused before anything reaches Redis
    my $len = $r->xlen('sse:log');
    check_json_error($A->publish('/pub/news', "bad \xff utf-8"), 400, 'invalid UTF-8 on A');
    check_json_error($B->publish('/pub/news', 'x', type => 'bad type'), 400, 'bad event type on B');
    check_json_error($A->publish('/pub/bad!name', 'x'), 400, 'bad channel name on A');
    check_json_error($B->publish('/pub/news', 'y' x 2000), 413, 'data over sse_max_message_size on B');
    check_json_error($A->publish('/pub/news', ''), 400, 'empty event on A');
    is($r->xlen('sse:log'), $len, 'refused POSTs added nothing to the log');
    $res = $A->publish('/pub/news', 'after the refused ones');
    my @next = $b1->read_events(count => 1, timeout => 5);
    is($next[0]{data} // '', 'after the refused ones', 'B\'s subscriber: the next event is the next good one');
    $a1->read_events(count => 1, timeout => 5);

    # GET on either node answers from its copy of the log
    my ($ga, $gb) = map { $_->http('GET', '/pub/news') } $A, $B;
    is($ga->{status} . '/' . $gb->{status}, '200/200', 'GET /pub/news: 200 on both nodes');
    is($gb->{json}{id} // '', $res->{json}{id} // '-', 'GET on B: the last id, published through A');
    is(($ga->{json}{events} // '') . '/' . ($gb->{json}{events} // ''), '5/5',
       'GET: both nodes keep the same 5 events');

    # DELETE through the log
    my $del = $A->http('DELETE', '/pub/news');
    is($del->{status}, 200, 'DELETE /pub/news on A: 200');
    my @ops = grep { ($_->{fields}{op} // '') eq 'delete' } $r->log_of('sse:log', 'news');
    is(scalar @ops, 1, 'DELETE is one log entry with op delete');
    ok($b1->is_closed(5), 'DELETE on A ends the stream of the subscriber on B');
    ok($a1->is_closed(5), 'and on A');
    ok(wait_until(sub { $B->http('GET', '/pub/news')->{status} == 404 }, 5),
       'GET /pub/news on B: 404 after the DELETE (history forgotten)');
    $_->close for $a1, $b1, $b2;
}

# ---------------------------------------------------------------- exactly once
my @CH = qw(x0 x1 x2);
my @PATHS = ('x0', 'x1', 'x2', 'x0,x1', 'x1,x2', 'x0,x1,x2');
my (%subs, @published);
{
    for my $n (['A', $A], ['B', $B]) {
        my ($name, $srv) = @$n;
        my @s = $srv->sse_connect_many(2 * @PATHS, sub { '/events/' . $PATHS[$_[0] % @PATHS] });
        my %w;
        $w{ $_->worker // '?' }++ for @s;
        my $i = 0;
        while (keys %w < 2 && $i < 40) {          # both workers must have some
            my $s = $srv->sse_connect('/events/' . $PATHS[$i++ % @PATHS]);
            push @s, $s;
            $w{ $s->worker // '?' }++;
        }
        is(scalar(grep { $_->status == 200 } @s), scalar @s, "$name: " . @s . ' subscribers open');
        my @workers = $srv->worker_pids;
        is(scalar(grep { $w{$_} } @workers), 2, "$name: subscribers on both workers ("
           . join(', ', map { "$_=$w{$_}" } sort keys %w) . ')');
        $subs{$name} = \@s;
    }

    my ($bad, %by) = (0);
    for my $i (0 .. 199) {
        my ($name, $srv) = $i % 2 ? ('B', $B) : ('A', $A);
        my $ch = $CH[$i % 3];
        my $type = $i % 5 == 0 ? 'tick' : undef;
        my $data = "ev $i" . ($i % 7 == 0 ? "\nsecond line" : '');
        my $res = $srv->publish("/pub/$ch", $data, (defined $type ? (type => $type) : ()));
        if ($res->{status} != 201) {
            $bad++;
            diag("POST $i on $name: $res->{status} $res->{body}") if $bad < 5;
            next;
        }
        $by{ $res->{worker} // '?' }++;
        push @published, { id => $res->{json}{id}, event => $type // 'message', data => $data, channel => $ch };
    }
    is($bad, 0, '200 POSTs alternately on A and B: all answered 201');
    diag('POSTs per worker: ' . join(', ', map { "$_=$by{$_}" } sort keys %by));
    ok(ids_strictly_increasing(map { $_->{id} } @published), 'answered ids strictly increase in POST order');
    same_events([log_events(@CH)], \@published, 'sse:log holds the 200 events, once each, in POST order, with the answered ids');

    my (@fail, $n) = ();
    for my $name ('A', 'B') {
        for my $s (@{ $subs{$name} }) {
            my ($p) = $s->{path} =~ m{^/events/(.+)$};
            my %in = map { $_ => 1 } split /,/, $p;
            my @want = grep { $in{ $_->{channel} } } @published;
            my @got = $s->read_events(count => scalar @want, timeout => 20);
            $s->{got} = \@got;
            $n++;
            push @fail, "$name $p (worker " . ($s->worker // '?') . '): ' . first_diff(\@got, \@want)
                if join("\0", map { ev_sig($_) } @got) ne join("\0", map { ev_sig($_) } @want);
        }
    }
    is(scalar @fail, 0, "exactly once: each of the $n subscribers got each of its events once, in log order, same ids on both nodes")
        or diag(join "\n", @fail[0 .. ($#fail > 9 ? 9 : $#fail)]);
    sleep 1;
    my @extra = map { my $k = $_->read_events(timeout => 0); $k ? ("$_->{path} on " . ($_->worker // '?') . ": $k more") : () }
                map { @$_ } values %subs;
    is(scalar @extra, 0, 'no subscriber gets anything more a second later (no late duplicate)')
        or diag(join "\n", @extra);
}

# ---------------------------------------------------------------- resume on the other node
{
    my ($sa) = grep { $_->{path} eq '/events/x0,x1' } @{ $subs{A} };
    my @seen = @{ $sa->{got} };
    my $mid = $seen[int(@seen / 2)]{id};
    my @want = grep { id_cmp($_->{id}, $mid) > 0 } @seen;
    my $rb = $B->sse_connect('/events/x0,x1', headers => { 'Last-Event-ID' => $mid });
    same_events([$rb->read_events(count => scalar @want, timeout => 10)], \@want,
                'Last-Event-ID from A (x0,x1, middle of its events) on B: exactly the events after it');
    is(scalar($rb->read_events(timeout => 0.5)), 0, '... and nothing more');

    my $rq = $B->sse_connect('/events/x0,x1?last_event_id=' . url_encode($mid));
    same_events([$rq->read_events(count => scalar @want, timeout => 10)], \@want,
                'the same with ?last_event_id= on B');

    # an id of another channel, from the middle of the log
    my $other = (grep { $_->{channel} eq 'x0' } @published)[30]{id};
    my @want2 = grep { $_->{channel} eq 'x2' && id_cmp($_->{id}, $other) > 0 } @published;
    my $ra = $A->sse_connect('/events/x2', headers => { 'Last-Event-ID' => $other });
    same_events([$ra->read_events(count => scalar @want2, timeout => 10)], \@want2,
                'x2 on A resumed from an x0 id in the middle of the log: the x2 events after it');

    # a browser on A goes away, events go on, it comes back on B
    my ($sc) = grep { $_->{path} eq '/events/x0,x1,x2' } @{ $subs{A} };
    my $last = $sc->{got}[-1]{id};
    $sc->close;
    my @missed;
    for my $i (0 .. 9) {
        my $srv = $i % 2 ? $A : $B;
        my $ch = $CH[$i % 3];
        my $res = $srv->publish("/pub/$ch", "missed $i");
        push @missed, { id => $res->{json}{id}, event => 'message', data => "missed $i", channel => $ch };
    }
    my $back = $B->sse_connect('/events/x2,x0', headers => { 'Last-Event-ID' => $last });
    my @want3 = grep { $_->{channel} ne 'x1' } @missed;
    same_events([$back->read_events(count => scalar @want3, timeout => 10)], \@want3,
                'closed on A, back on B with its Last-Event-ID (x2,x0): exactly the missed events');
    my $live = $A->publish('/pub/x0', 'live after resume');
    same_events([$back->read_events(count => 1, timeout => 5)],
                [{ id => $live->{json}{id}, event => 'message', data => 'live after resume' }],
                'then the live events, no gap, no duplicate');
    $_->close for $rb, $rq, $ra, $back;
}
$_->close for map { @$_ } values %subs;

# ---------------------------------------------------------------- a fresh node
{
    my $fh = "sse_redis_prefix fresh:;\nsse_history 5;\n";
    my $D = start_node(redis => $r, name => 'D (prefix fresh:, sse_history 5)', http => $fh);
    my @pub;
    for my $i (1 .. 24) {
        my $ch = $i % 2 ? 'f0' : 'f1';
        my $res = $D->publish("/pub/$ch", "fresh $i");
        push @pub, { id => $res->{json}{id}, event => 'message', data => "fresh $i", channel => $ch };
    }
    is(scalar(grep { defined $_->{id} } @pub), 24, 'D: 24 events published on f0 and f1');
    my $E = start_node(redis => $r, name => 'E, started after them (fresh zone)', http => $fh);
    my @f0 = (grep { $_->{channel} eq 'f0' } @pub)[-5 .. -1];
    my @f1 = (grep { $_->{channel} eq 'f1' } @pub)[-5 .. -1];
    my $g = $E->http('GET', '/pub/f0');
    is($g->{status}, 200, 'E: GET /pub/f0 answers from the log read at start');
    is(($g->{json}{events} // '') . ' ' . ($g->{json}{id} // ''), "5 $f0[-1]{id}",
       'E: keeps the latest sse_history (5) f0 events, the last id is the log\'s');
    my $s = $E->sse_connect('/events/f0', headers => { 'Last-Event-ID' => '1-0' });
    same_events([$s->read_events(count => 5, timeout => 10)], \@f0,
                'E: a resume from an old id gets the 5 latest f0 events');
    is(scalar($s->read_events(timeout => 0.5)), 0, 'E: and no older one');
    my $from = (grep { $_->{channel} eq 'f1' } @pub)[8]{id};
    my @want = sort { id_cmp($a->{id}, $b->{id}) } grep { id_cmp($_->{id}, $from) > 0 } @f0, @f1;
    my $m = $E->sse_connect('/events/f0,f1', headers => { 'Last-Event-ID' => $from });
    same_events([$m->read_events(count => scalar @want, timeout => 10)], \@want,
                'E: f0,f1 resumed from an id in the middle: the kept events after it, in id order');
    my $live = $D->publish('/pub/f1', 'live to E');
    same_events([$m->read_events(count => 1, timeout => 5)],
                [{ id => $live->{json}{id}, event => 'message', data => 'live to E' }],
                'E: then a live event published on D');
    $_->close for $s, $m;
    $E->stop;
    $D->stop;
}

$A->stop;
$B->stop;
$r->stop;
done_testing;
