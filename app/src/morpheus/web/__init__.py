"""Server-rendered sites: the storefront for readers and the dashboard for operators."""
