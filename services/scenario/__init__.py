"""The plan's scenario: two student branches of the School of National Defence Education
(国防教育学院), May 2010 – April 2011, loaded through the services' HTTP APIs."""
