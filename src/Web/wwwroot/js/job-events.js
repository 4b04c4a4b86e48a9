// Live events of one job from the JobsHub (/hubs/jobs), over the official @microsoft/signalr client (bundled from npm
// into wwwroot/lib, loaded as the global `signalR`). The fine-tune page starts a feed through JS interop:
//
//   start(dotnet, jobId, chartId) subscribes from sequence number 0 (the hub returns the backlog in pages, then pushes
//   each new event), hands every event once and in order to dotnet.OnEvents(batch), draws the loss chart, and after a
//   reconnect (or the server's "resync") subscribes again from the last sequence number it saw, so nothing is missed
//   and nothing is shown twice. A live event that skips a number makes it fetch the events in between first.
//
// window.loomJobFeeds maps job ids to their feeds (lastSeq, connection): the browser tests read it.

const RetryCapMs = 10_000;
const BatchToDotnet = 25; // events per call into .NET (the circuit's messages are at most 32 KB)
window.loomJobFeeds ??= new Map();

// The client's own log: an expected disconnection is not a page error, so errors go out as warnings.
const logger = {
    log(level, message) {
        if (level >= signalR.LogLevel.Warning) console.warn(`[jobs hub] ${message}`);
    },
};

class JobFeed {
    constructor(dotnet, jobId, chartId) {
        this.dotnet = dotnet;
        this.jobId = jobId;
        this.chartId = chartId;
        this.lastSeq = 0;
        this.received = 0;
        this.stopped = false;
        this.queue = Promise.resolve();
        this.chart = null;
        this.connection = new signalR.HubConnectionBuilder()
            .withUrl(new URL('hubs/jobs', document.baseURI).href)
            .withAutomaticReconnect({ nextRetryDelayInMilliseconds: ctx => Math.min(RetryCapMs, 250 * 2 ** ctx.previousRetryCount) })
            .configureLogging(logger)
            .build();
        this.connection.on('jobEvent', e => {
            if (e.job_id === this.jobId) this.enqueue(() => this.accept([e], true));
        });
        this.connection.on('resync', () => this.enqueue(() => this.subscribe()));
        this.connection.onreconnecting(() => this.report('reconnecting'));
        this.connection.onreconnected(() => this.enqueue(() => this.subscribe()));
        this.connection.onclose(() => {
            if (!this.stopped) this.report('reconnecting').then(() => this.openLater(RetryCapMs / 4));
        });
    }

    // Steps run one at a time, in order: a live event waits for the backlog before it.
    enqueue(step) {
        this.queue = this.queue.then(step).catch(e => {
            console.warn(`[jobs hub] ${e?.message ?? e}`);
            this.report('error');
        });
        return this.queue;
    }

    async open() {
        try {
            await this.connection.start();
        } catch (e) {
            console.warn(`[jobs hub] could not connect: ${e?.message ?? e}`);
            await this.report('reconnecting');
            this.openLater(1000);
            return;
        }
        await this.enqueue(() => this.subscribe());
    }

    openLater(ms) {
        if (this.stopped) return;
        setTimeout(() => { if (!this.stopped && this.connection.state === signalR.HubConnectionState.Disconnected) this.open(); }, ms);
    }

    // Joins the job's group and reads what came after lastSeq, a page at a time.
    async subscribe() {
        let batch = await this.connection.invoke('Subscribe', this.jobId, this.lastSeq);
        await this.accept(batch.events, false);
        while (batch.hasMore) {
            batch = await this.connection.invoke('GetEvents', this.jobId, this.lastSeq);
            await this.accept(batch.events, false);
        }
        await this.report('live');
    }

    async catchUp() {
        let batch;
        do {
            batch = await this.connection.invoke('GetEvents', this.jobId, this.lastSeq);
            await this.accept(batch.events, false);
        } while (batch.hasMore);
    }

    async accept(events, live) {
        const fresh = [];
        for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
            if (e.seq <= this.lastSeq) continue; // seen already (join-then-read can deliver one twice)
            if (e.seq > this.lastSeq + 1) {
                if (live) { await this.deliver(fresh); return this.catchUp(); } // the event is committed: the read includes it
                console.warn(`[jobs hub] events ${this.lastSeq + 1}..${e.seq - 1} of ${this.jobId} are missing from a page`);
            }
            fresh.push(e);
            this.lastSeq = e.seq;
        }
        await this.deliver(fresh);
    }

    async deliver(events) {
        if (events.length === 0) return;
        this.received += events.length;
        this.draw(events);
        for (let i = 0; i < events.length; i += BatchToDotnet)
            await this.dotnet.invokeMethodAsync('OnEvents', events.slice(i, i + BatchToDotnet));
    }

    report(state) {
        this.state = state;
        return this.dotnet.invokeMethodAsync('OnConnectionState', state).catch(() => { });
    }

    // Training and validation loss by step, from the metrics events.
    draw(events) {
        const points = events.filter(e => e.kind === 'metrics' && e.payload?.data);
        if (points.length === 0) return;
        const chart = this.chart ?? this.createChart();
        if (!chart) return;
        for (const e of points) {
            const d = e.payload.data;
            if (typeof d.train_loss === 'number') chart.data.datasets[0].data.push({ x: d.step, y: d.train_loss });
            if (typeof d.valid_loss === 'number') chart.data.datasets[1].data.push({ x: d.step, y: d.valid_loss });
        }
        chart.update('none');
    }

    createChart() {
        const canvas = document.getElementById(this.chartId);
        if (!canvas || !window.Chart) return null;
        Chart.getChart(canvas)?.destroy();
        this.chart = new Chart(canvas, {
            type: 'line',
            data: {
                datasets: [
                    { label: 'training loss', data: [], borderColor: '#3552d4', backgroundColor: '#3552d433', borderWidth: 1.5, pointRadius: 0 },
                    { label: 'validation loss', data: [], borderColor: '#e08a1e', backgroundColor: '#e08a1e33', borderWidth: 1.5, pointRadius: 2 },
                ],
            },
            options: {
                responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
                interaction: { mode: 'nearest', intersect: false },
                scales: {
                    x: { type: 'linear', title: { display: true, text: 'step' }, ticks: { precision: 0 } },
                    y: { title: { display: true, text: 'loss' } },
                },
                plugins: { legend: { position: 'bottom' } },
            },
        });
        return this.chart;
    }

    async stop() {
        this.stopped = true;
        window.loomJobFeeds.delete(this.jobId);
        this.chart?.destroy();
        this.chart = null;
        await this.connection.stop();
    }
}

export function start(dotnet, jobId, chartId) {
    window.loomJobFeeds.get(jobId)?.stop();
    const feed = new JobFeed(dotnet, jobId, chartId);
    window.loomJobFeeds.set(jobId, feed);
    feed.open();
    return feed;
}
