/* Behaviour shared by every screen (loaded after jQuery and Bootstrap). */
"use strict";
