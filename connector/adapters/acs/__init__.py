"""Azure Communication Services: phone numbers (and, later, SMS). SDKs imported where used."""
