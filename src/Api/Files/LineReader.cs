namespace Loom.Api.Files;

/// <summary>One line of a stream without its newline; <see cref="TooLong"/> when it passed the limit (its bytes are then not kept).</summary>
internal readonly record struct Line(ReadOnlyMemory<byte> Bytes, bool TooLong, bool End);

/// <summary>
/// Splits a stream into '\n'-terminated lines (a trailing '\r' is dropped) holding at most one line of
/// <c>maxLineBytes</c> in memory: a longer line is reported as too long instead of being buffered.
/// </summary>
internal sealed class LineReader(Stream stream, int maxLineBytes)
{
    private readonly byte[] _buffer = new byte[Math.Max(maxLineBytes, 1) + 1 + 64 * 1024]; // (max line + newline + one read)
    private int _start, _end;
    private bool _eof;

    public async ValueTask<Line> NextAsync(CancellationToken ct)
    {
        while (true)
        {
            var newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                var line = _buffer.AsMemory(_start, newline);
                _start += newline + 1;
                return line.Length > maxLineBytes ? new Line(default, true, false) : new Line(TrimCr(line), false, false);
            }
            if (_end - _start > maxLineBytes + 1)
            {
                // No newline within the limit: skip to the end of this line without keeping it.
                await SkipLineAsync(ct);
                return new Line(default, true, false);
            }
            if (_eof)
            {
                if (_start == _end) return new Line(default, false, true);
                var last = _buffer.AsMemory(_start, _end - _start);
                _start = _end;
                return last.Length > maxLineBytes ? new Line(default, true, false) : new Line(TrimCr(last), false, false);
            }
            await FillAsync(ct);
        }
    }

    private static ReadOnlyMemory<byte> TrimCr(ReadOnlyMemory<byte> line) => line.Span is [.., (byte)'\r'] ? line[..^1] : line;

    private async ValueTask FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            (_end, _start) = (_end - _start, 0);
        }
        var n = await stream.ReadAsync(_buffer.AsMemory(_end), ct);
        if (n == 0) _eof = true;
        _end += n;
    }

    private async ValueTask SkipLineAsync(CancellationToken ct)
    {
        while (true)
        {
            var newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
            if (newline >= 0) { _start += newline + 1; return; }
            _start = _end = 0;
            if (_eof) return;
            await FillAsync(ct);
        }
    }
}
