using System.Text.RegularExpressions;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace Loom.Web.E2E;

/// <summary>The stock client script's built-in reconnect overlay (see docs/decisions/002-blazor-script.md).</summary>
public sealed class ReconnectTests(LoomServerFixture loom) : PortalTest(loom)
{
    [Fact]
    public async Task ADroppedConnectionShowsTheReconnectOverlayAndTheCircuitResumes()
    {
        var page = await OpenAsync();
        // The cut connection is logged by the script and its renegotiation fails while "offline": both on purpose.
        Allow(new Regex("console error: .*(WebSocket|connection|Connection|reconnect|Failed to fetch|negotiat|ERR_FAILED)"));
        Allow(new Regex("request failed: POST .*/_blazor/negotiate"));
        await SignInAsync(page);

        // Route the circuit's traffic through Playwright so the test can cut it like a network drop.
        var offline = false;
        var sockets = new List<IWebSocketRoute>();
        await page.RouteWebSocketAsync(new Regex("/_blazor"), socket =>
        {
            if (Volatile.Read(ref offline))
            {
                _ = socket.CloseAsync();
                return;
            }
            lock (sockets) sockets.Add(socket);
            socket.ConnectToServer();
        });
        await page.RouteAsync(new Regex("/_blazor/negotiate"), route => Volatile.Read(ref offline) ? route.AbortAsync() : route.ContinueAsync());

        await page.GotoAsync("/keys");
        // Circuit state that a page reload would lose: the secret of a key just created.
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync($"drop-{Guid.NewGuid():N}"[..16]);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create key" }).ClickAsync();
        var secretBox = page.GetByTestId("new-secret");
        await Expect(secretBox).ToHaveTextAsync(new Regex("^sk-loom-"));
        var secret = (await secretBox.TextContentAsync())!.Trim();
        Assert.NotEmpty(sockets);

        Volatile.Write(ref offline, true);
        IWebSocketRoute[] open;
        lock (sockets) open = [.. sockets];
        foreach (var socket in open) await socket.CloseAsync();
        // The script's overlay lives in the shadow root of #components-reconnect-modal.
        var overlay = page.Locator("#components-reconnect-modal").GetByText(new Regex("Rejoin"));
        await Expect(overlay).ToBeVisibleAsync();

        Volatile.Write(ref offline, false);
        await Expect(overlay).ToBeHiddenAsync();

        // The same circuit resumed (a reload would have dropped the secret) and still handles events.
        await Expect(secretBox).ToHaveTextAsync(secret);
        await page.GetByRole(AriaRole.Button, new() { Name = "I have copied it" }).ClickAsync();
        await Expect(secretBox).ToHaveCountAsync(0);
    }
}
