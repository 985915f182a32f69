"""Currency conversion: exchange rates from the config's static table and, optionally, an HTTP
rate provider; exact conversion of money with the rate used on every converted figure."""
