using System.IO.Compression;

namespace Loom.Benchmarks;

/// <summary>A bare line chart written as a PNG (no text: the legend goes with the figure's caption). Series are
/// drawn over a white canvas with a light grid; x and y start at 0.</summary>
internal sealed class PngChart(int width, int height)
{
    private readonly byte[] _rgb = Enumerable.Repeat((byte)255, width * height * 3).ToArray(); // (height, width, 3)
    private const int Margin = 20;

    public void Draw(IReadOnlyList<(double X, double Y)> points, (byte R, byte G, byte B) color, double xMax, double yMax, int thickness = 2)
    {
        for (int i = 1; i < points.Count; i++)
        {
            var (x0, y0) = Map(points[i - 1], xMax, yMax);
            var (x1, y1) = Map(points[i], xMax, yMax);
            Line(x0, y0, x1, y1, color, thickness);
        }
    }

    /// <summary>Axes, and a light horizontal line every <paramref name="yStep"/> and vertical line every <paramref name="xStep"/>.</summary>
    public void Grid(double xMax, double yMax, double xStep, double yStep)
    {
        var light = ((byte)225, (byte)225, (byte)225);
        for (double y = yStep; y < yMax; y += yStep) Draw([(0, y), (xMax, y)], light, xMax, yMax, 1);
        for (double x = xStep; x < xMax; x += xStep) Draw([(x, 0), (x, yMax)], light, xMax, yMax, 1);
        var black = ((byte)0, (byte)0, (byte)0);
        Draw([(0, 0), (xMax, 0)], black, xMax, yMax, 1);
        Draw([(0, 0), (0, yMax)], black, xMax, yMax, 1);
    }

    private (double X, double Y) Map((double X, double Y) p, double xMax, double yMax) =>
        (Margin + p.X / xMax * (width - 2 * Margin), height - Margin - Math.Min(p.Y, yMax) / yMax * (height - 2 * Margin));

    private void Line(double x0, double y0, double x1, double y1, (byte R, byte G, byte B) c, int thickness)
    {
        int steps = (int)Math.Ceiling(Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0))) + 1;
        for (int s = 0; s <= steps; s++)
        {
            double t = (double)s / steps;
            int cx = (int)Math.Round(x0 + (x1 - x0) * t), cy = (int)Math.Round(y0 + (y1 - y0) * t);
            for (int dy = 0; dy < thickness; dy++)
                for (int dx = 0; dx < thickness; dx++)
                {
                    int x = cx + dx - thickness / 2, y = cy + dy - thickness / 2;
                    if ((uint)x >= (uint)width || (uint)y >= (uint)height) continue;
                    int o = (y * width + x) * 3;
                    (_rgb[o], _rgb[o + 1], _rgb[o + 2]) = c;
                }
        }
    }

    public void Save(string path)
    {
        using var file = File.Create(path);
        file.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BigEndian(header, 0, (uint)width);
        BigEndian(header, 4, (uint)height);
        header[8] = 8;  // bits per channel
        header[9] = 2;  // truecolour
        Chunk(file, "IHDR", header);
        using var raw = new MemoryStream();
        using (var z = new ZLibStream(raw, CompressionLevel.Optimal, leaveOpen: true))
            for (int y = 0; y < height; y++)
            {
                z.WriteByte(0); // no filter
                z.Write(_rgb, y * width * 3, width * 3);
            }
        Chunk(file, "IDAT", raw.ToArray());
        Chunk(file, "IEND", []);
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        BigEndian(head, 0, (uint)data.Length);
        for (int i = 0; i < 4; i++) head[4 + i] = (byte)type[i];
        s.Write(head);
        s.Write(data);
        uint crc = Crc(Crc(0xFFFFFFFF, head.AsSpan(4)), data) ^ 0xFFFFFFFF;
        var tail = new byte[4];
        BigEndian(tail, 0, crc);
        s.Write(tail);
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static void BigEndian(byte[] b, int at, uint v)
    {
        b[at] = (byte)(v >> 24); b[at + 1] = (byte)(v >> 16); b[at + 2] = (byte)(v >> 8); b[at + 3] = (byte)v;
    }
}
