// Admin sign-in with MSAL (redirect flow, refresh tokens; no popups, no hidden iframes).

import { InteractionRequiredAuthError, PublicClientApplication } from "@azure/msal-browser";

export class Auth {
  /** Build MSAL from the portal configuration and finish a sign-in redirect if one is pending. */
  static async create(msal) {
    const redirectUri = msal.redirectUri || new URL(".", window.location.href).href;
    const app = new PublicClientApplication({
      auth: {
        clientId: msal.clientId,
        authority: msal.authority,
        knownAuthorities: msal.knownAuthorities || [],
        redirectUri,
        postLogoutRedirectUri: redirectUri,
      },
      cache: { cacheLocation: "sessionStorage" },
    });
    await app.initialize();
    const result = await app.handleRedirectPromise();
    const account = result?.account || app.getActiveAccount() || app.getAllAccounts()[0] || null;
    if (account) app.setActiveAccount(account);
    return new Auth(app, msal.scopes || []);
  }

  constructor(app, scopes) {
    this.app = app;
    this.scopes = scopes;
  }

  get account() {
    return this.app.getActiveAccount();
  }

  /** The signed-in admin's tenant (the `tid` claim). */
  get tenantId() {
    return this.account?.tenantId || this.account?.idTokenClaims?.tid || null;
  }

  signIn() {
    return this.app.loginRedirect({ scopes: this.scopes, prompt: "select_account" });
  }

  signOut() {
    return this.app.logoutRedirect({ account: this.account });
  }

  /** An access token for the admin API; redirects to sign in again when a refresh is not enough. */
  async accessToken({ forceRefresh = false } = {}) {
    const request = { scopes: this.scopes, account: this.account, forceRefresh };
    try {
      return (await this.app.acquireTokenSilent(request)).accessToken;
    } catch (err) {
      if (err instanceof InteractionRequiredAuthError) {
        await this.app.acquireTokenRedirect({ scopes: this.scopes, account: this.account });
        return new Promise(() => {}); // the page navigates away
      }
      throw err;
    }
  }
}
