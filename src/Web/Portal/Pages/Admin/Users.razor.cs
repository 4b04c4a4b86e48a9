using Loom.Web.Portal.Admin;
using Microsoft.AspNetCore.Components;

namespace Loom.Web.Portal.Pages.Admin;

/// <summary>Administrators create portal users with an initial password, move them between tenants, grant or take the
/// admin role, set new passwords, and lock or unlock them.</summary>
public sealed partial class Users : ComponentBase
{
    [Inject] private UserAdministration Service { get; set; } = default!;
    [Inject] private TenantAdministration TenantService { get; set; } = default!;
    [Inject] private ILogger<Users> Logger { get; set; } = default!;
    [Inject] private Invitations Invitations { get; set; } = default!;
    [Inject] private NavigationManager Navigation { get; set; } = default!;
    [Inject] private Microsoft.Extensions.Options.IOptions<InvitationOptions> InvitationOptions { get; set; } = default!;

    private string inviteEmail = "", inviteTenant = "";
    private bool inviteAdmin;
    private string? inviteLink, invitedEmail, invitedUntil;

    private string InviteDays => InvitationOptions.Value.Lifetime is var t && t.TotalHours >= 48 ? $"{t.TotalDays:0.#} days" : $"{t.TotalHours:0.#} hours";

    private Task InviteAsync() => RunAsync(async () =>
    {
        inviteLink = null;
        if (!Guid.TryParse(inviteTenant, out var tenantId)) throw new AdminInputException("invite-tenant", "Pick a tenant.");
        var invitation = await Invitations.InviteAsync(inviteEmail, tenantId, inviteAdmin, CancellationToken.None);
        Logger.LogInformation("Portal user {UserId} invited by an administrator", invitation.User.Id);
        inviteLink = Navigation.ToAbsoluteUri($"account/invitation/{invitation.User.Id}?token={Uri.EscapeDataString(invitation.Token)}").ToString();
        invitedEmail = invitation.User.Email;
        invitedUntil = invitation.ExpiresAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'");
        (inviteEmail, inviteAdmin) = ("", false);
    }, field => field == "tenant" ? "invite-tenant" : field);

    private List<UserRow>? users;
    private List<TenantRow> tenants = [];
    private string newName = "", newPassword = "", resetPassword = "";
    private string newTenant = "", editTenant = "";
    private bool newAdmin, editAdmin, busy;
    private UserRow? selected;
    private string? message;
    private readonly Dictionary<string, string> errors = [];

    private bool Interactive => RendererInfo.IsInteractive;
    private string? Error(string field) => errors.GetValueOrDefault(field);

    protected override async Task OnInitializedAsync()
    {
        tenants = await TenantService.ListAsync(CancellationToken.None);
        await LoadAsync();
    }

    private async Task LoadAsync()
    {
        users = await Service.ListAsync(CancellationToken.None);
        if (selected is not null) selected = users.FirstOrDefault(u => u.Id == selected.Id);
    }

    private void Select(UserRow u)
    {
        selected = u;
        editTenant = u.TenantId.ToString();
        editAdmin = u.IsAdmin;
        resetPassword = "";
        message = null;
        errors.Clear();
    }

    private Task CreateAsync() => RunAsync(async () =>
    {
        if (!Guid.TryParse(newTenant, out var tenantId)) throw new AdminInputException("tenant", "Pick a tenant.");
        var user = await Service.CreateAsync(newName, newPassword, tenantId, newAdmin, CancellationToken.None);
        Logger.LogInformation("Portal user {UserId} created by an administrator", user.Id);
        message = $"User “{user.UserName}” created.";
        (newName, newPassword, newAdmin) = ("", "", false);
    });

    private Task SaveAsync() => RunAsync(async () =>
    {
        if (!Guid.TryParse(editTenant, out var tenantId)) throw new AdminInputException("manage-tenant", "Pick a tenant.");
        await Service.UpdateAsync(selected!.Id, tenantId, editAdmin, CancellationToken.None);
        message = $"User “{selected.UserName}” saved.";
    }, field => field is "tenant" or "role" ? "manage-tenant" : field);

    private Task ResetAsync() => RunAsync(async () =>
    {
        await Service.ResetPasswordAsync(selected!.Id, resetPassword, CancellationToken.None);
        Logger.LogInformation("Password of portal user {UserId} set by an administrator", selected.Id);
        message = $"New password set for “{selected.UserName}”.";
        resetPassword = "";
    }, field => field == "password" ? "manage-password" : field);

    private Task LockAsync(bool locked) => RunAsync(async () =>
    {
        await Service.SetLockedAsync(selected!.Id, locked, CancellationToken.None);
        Logger.LogInformation("Portal user {UserId} {Action} by an administrator", selected.Id, locked ? "locked" : "unlocked");
        message = $"User “{selected.UserName}” {(locked ? "locked" : "unlocked")}.";
    });

    private async Task RunAsync(Func<Task> action, Func<string, string>? fieldOf = null)
    {
        errors.Clear();
        message = null;
        busy = true;
        try
        {
            await action();
            await LoadAsync();
        }
        catch (AdminInputException e)
        {
            errors[fieldOf?.Invoke(e.Field) ?? e.Field] = e.Message;
        }
        finally
        {
            busy = false;
        }
    }
}
