/** What roam tells CRIU the same way in every request. */

/** the key the endpoint's network namespace is declared external under at dump, and handed back under at restore */
export const NETNS_KEY = 'roam-netns';
export const CRIU_LOG_LEVEL = 4;
